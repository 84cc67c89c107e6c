package keysapi

import (
	"math"
	"strconv"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/ratelimit"
)

// mintCallers bounds the memory of the mint limiter: the callers seen most
// recently keep their bucket; an evicted caller starts again with a full
// one, which the live-key cap still bounds.
const mintCallers = 10_000

// mintLimiter limits how often one caller (issuer and subject) may mint
// keys, per process.
type mintLimiter struct {
	mu    sync.Mutex
	cache *lru.Cache[string, *mintBucket]
}

type mintBucket struct {
	limit ratelimit.Limit // the configuration it was made for
	lim   *rate.Limiter
}

func newMintLimiter() *mintLimiter {
	c, _ := lru.New[string, *mintBucket](mintCallers) // only fails for size <= 0
	return &mintLimiter{cache: c}
}

// callerKey is the issuer-qualified identity of a caller: the same subject
// of two issuers is two callers, and a JWT caller and the keys it minted
// are one. The issuer's length makes the key unambiguous.
func callerKey(id *authz.Identity) string {
	return strconv.Itoa(len(id.Issuer)) + ":" + id.Issuer + id.Subject
}

// allow spends one mint of caller's budget under l. When the budget is
// spent it returns false and the seconds to wait before retrying.
func (m *mintLimiter) allow(caller string, l ratelimit.Limit, now time.Time) (bool, string) {
	l = l.Normalized()
	m.mu.Lock()
	b, ok := m.cache.Get(caller)
	if !ok || b.limit != l {
		b = &mintBucket{limit: l, lim: rate.NewLimiter(rate.Limit(float64(l.Requests)/l.Per.Seconds()), l.Burst)}
		m.cache.Add(caller, b)
	}
	r := b.lim.ReserveN(now, 1)
	m.mu.Unlock()
	if !r.OK() {
		return false, strconv.Itoa(int(math.Ceil(l.Per.Seconds())))
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, strconv.Itoa(int(math.Ceil(d.Seconds())))
	}
	return true, ""
}
