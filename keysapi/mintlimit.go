package keysapi

import (
	"math"
	"net/http"
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

// limitMint spends one mint of the caller's budget (api.mint_rate_limit),
// answering 429 with retry-after itself when it is spent.
func (h *Handler) limitMint(w http.ResponseWriter, id *authz.Identity, cfg Config, oauth bool) bool {
	ok, retry := h.mint.allow(callerKey(id), cfg.MintRateLimit, h.deps.Now())
	if ok {
		return true
	}
	h.deps.Metrics.count(EventMintLimited)
	w.Header().Set("retry-after", retry)
	if oauth {
		// RFC 6749 has no rate error; slow_down is RFC 8628's.
		oauthError(w, http.StatusTooManyRequests, "slow_down", "too many keys minted by this subject; retry later")
	} else {
		writeError(w, http.StatusTooManyRequests, "rate_limited", "too many keys created by this caller; retry later")
	}
	return false
}
