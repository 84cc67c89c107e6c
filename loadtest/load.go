package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// request is one CheckRequest of a scenario and the decision extauthz must
// make for it.
type request struct {
	req   *authv3.CheckRequest
	allow bool
	wire  []byte // req encoded, sent as is by the load generator
}

// checkMethod is the full gRPC method name of Check.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawCodec is the load generator's codec: requests are encoded once, before
// the run, and a response is only scanned for the two fields that decide
// (status.code and the presence of ok_response). It keeps the generator's
// CPU per call low, so that on two cores the server, not the generator, is
// what runs out of CPU. Both servers are driven with exactly the same
// bytes.
type rawCodec struct{}

// rawMessage carries encoded bytes out, and the decided fields back.
type rawMessage struct {
	out        []byte
	code       uint64
	okResponse bool
}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot encode %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m.out)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("rawCodec: cannot decode into %T", v)
	}
	b := data.Materialize()
	m.code, m.okResponse = 0, false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == 1 || num == 3) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == 3 {
				m.okResponse = true
			} else {
				code, err := statusCode(v)
				if err != nil {
					return err
				}
				m.code = code
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// statusCode reads field 1 (code) of a google.rpc.Status.
func statusCode(b []byte) (uint64, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			return v, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return 0, nil
}

// call sends one encoded Check on conn.
func call(ctx context.Context, conn *grpc.ClientConn, rq *request) (allowed, denied bool, err error) {
	var m rawMessage
	m.out = rq.wire
	if err := conn.Invoke(ctx, checkMethod, &m, &m, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return false, false, err
	}
	return m.code == 0 && m.okResponse, m.code != 0, nil
}

// result is what one closed-loop run measured.
type result struct {
	checks   int           // answered during the measurement window
	errors   int           // RPC errors (any, at any time)
	wrong    int           // answers that contradict request.allow (when checked)
	denied   int           // answers with a non-OK status
	elapsed  time.Duration // measurement window
	cpu      time.Duration // server CPU time during the window; 0 if unknown
	cpuKnown bool
	genCPU   time.Duration   // the load generator's CPU time during the window
	lat      []time.Duration // latency of every measured check, sorted
}

func (r result) rps() float64 { return float64(r.checks) / r.elapsed.Seconds() }

// cpuPerCheck is the server CPU time per answered check.
func (r result) cpuPerCheck() time.Duration {
	if !r.cpuKnown || r.checks == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.checks)
}

// percentile returns the q-quantile (0..1) of the sorted latencies.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

// loadSpec describes one run.
type loadSpec struct {
	conns   []*grpc.ClientConn // the workers share them round-robin
	reqs    []request
	workers int
	warmup  time.Duration
	measure time.Duration
	check   bool                         // compare each answer with request.allow
	cpu     func() (time.Duration, bool) // the server's CPU time so far
	timeout time.Duration                // per call
}

// Phases of a run.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// runLoad drives spec.workers closed-loop callers (each sends its next
// Check as soon as the previous one is answered) for warmup, then measures
// for spec.measure. Worker w starts at request w*len(reqs)/workers and walks
// the list, so distinct requests are spread over the run.
func runLoad(ctx context.Context, spec loadSpec) result {
	var phase atomic.Int32
	type workerResult struct {
		lat                   []time.Duration
		errors, wrong, denied int
		firstErr              error
	}
	out := make([]workerResult, spec.workers)
	var wg sync.WaitGroup
	for w := range spec.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := spec.conns[w%len(spec.conns)]
			wr := &out[w]
			wr.lat = make([]time.Duration, 0, 1<<14)
			i := w * len(spec.reqs) / spec.workers
			for {
				ph := phase.Load()
				if ph == phaseStop || ctx.Err() != nil {
					return
				}
				rq := &spec.reqs[i]
				i++
				if i == len(spec.reqs) {
					i = 0
				}
				cctx, cancel := context.WithTimeout(ctx, spec.timeout)
				t0 := time.Now()
				allowed, denied, err := call(cctx, conn, rq)
				lat := time.Since(t0)
				cancel()
				if err != nil {
					if ctx.Err() == nil {
						wr.errors++
						if wr.firstErr == nil {
							wr.firstErr = err
						}
					}
					continue
				}
				if ph != phaseMeasure {
					continue
				}
				if denied {
					wr.denied++
				}
				if spec.check && allowed != rq.allow {
					wr.wrong++
				}
				wr.lat = append(wr.lat, lat)
			}
		}()
	}

	sleep(ctx, spec.warmup)
	var cpu0 time.Duration
	var cpuOK bool
	if spec.cpu != nil {
		cpu0, cpuOK = spec.cpu()
	}
	gen0, _ := cpuTime(os.Getpid())
	t0 := time.Now()
	phase.Store(phaseMeasure)
	sleep(ctx, spec.measure)
	phase.Store(phaseStop)
	elapsed := time.Since(t0)
	gen1, _ := cpuTime(os.Getpid())
	var cpu1 time.Duration
	if spec.cpu != nil && cpuOK {
		cpu1, cpuOK = spec.cpu()
	}
	wg.Wait()

	r := result{elapsed: elapsed, cpu: cpu1 - cpu0, cpuKnown: cpuOK, genCPU: gen1 - gen0}
	n := 0
	for _, wr := range out {
		n += len(wr.lat)
	}
	r.lat = make([]time.Duration, 0, n)
	var firstErr error
	for _, wr := range out {
		r.lat = append(r.lat, wr.lat...)
		r.errors += wr.errors
		r.wrong += wr.wrong
		r.denied += wr.denied
		if firstErr == nil {
			firstErr = wr.firstErr
		}
	}
	if firstErr != nil {
		logf("  %d RPC errors, the first: %v", r.errors, firstErr)
	}
	r.checks = len(r.lat)
	slices.Sort(r.lat)
	return r
}

// prime sends every request once, spread over the workers, so caches are
// warm before anything is measured. It returns the number of RPC errors and
// wrong answers.
func prime(ctx context.Context, conns []*grpc.ClientConn, reqs []request, workers int, check bool) (errs, wrong int, err error) {
	var next atomic.Int64
	var nErr, nWrong atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := authv3.NewAuthorizationClient(conns[w%len(conns)])
			for {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) || ctx.Err() != nil {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				resp, err := client.Check(cctx, reqs[i].req)
				cancel()
				if err != nil {
					nErr.Add(1)
					first.CompareAndSwap(nil, err)
					continue
				}
				if check && allowedResponse(resp) != reqs[i].allow {
					nWrong.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if e, ok := first.Load().(error); ok {
		err = fmt.Errorf("first error: %w", e)
	}
	return int(nErr.Load()), int(nWrong.Load()), err
}

// allowedResponse reports whether resp allows the request: status OK and an
// OkHttpResponse (what Envoy forwards upstream with the identity headers).
func allowedResponse(resp *authv3.CheckResponse) bool {
	return resp.GetStatus().GetCode() == 0 && resp.GetOkResponse() != nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
