package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// TestRun_TinyLoad runs a short load of every main scenario against both
// servers, so the tool cannot rot: it must finish with zero RPC errors and
// zero wrong decisions, and print a row per server and scenario with a ratio
// to the floor. It builds the servers itself with the flags of the test
// (see buildServers) and hands them over with -bin and -floor-bin.
func TestRun_TinyLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs servers for a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, floorBin := buildServers(ctx, t)
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{
		"-bin", bin, "-floor-bin", floorBin,
		"-duration", "500ms", "-warmup", "200ms", "-rounds", "1",
		"-conns", "1", "-concurrency", "4", "-tokens", "20",
		"-scenarios", "jwt_cached,jwt_distinct,api_key,mix_10pct_denials",
		"-pin=false", // do not move the test process to one CPU
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("run = %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, s := range []string{"jwt_cached", "jwt_distinct", "api_key", "mix_10pct_denials"} {
		if n := strings.Count(out, s); n < 3 { // floor row, extauthz row, description
			t.Errorf("scenario %s appears %d times in the table, want a row per server and its description:\n%s", s, n, out)
		}
	}
	if !strings.Contains(out, "×") {
		t.Errorf("no ratio to the floor in the table:\n%s", out)
	}
}

// buildServers builds cmd/extauthz and loadtest/floor in one go command,
// with -race when the test runs under it and without -trimpath: the tool's
// own build (-trimpath) would compile every package, dependencies included,
// a second time, whereas this one reuses what go test has just compiled for
// the test binary and only links.
func buildServers(ctx context.Context, t *testing.T) (bin, floorBin string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/extauthz", "./loadtest/floor")...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
	}
	return filepath.Join(dir, "extauthz"), filepath.Join(dir, "floor")
}

// TestParseFlags_Short: -short shortens what was not set explicitly, and
// keeps what was.
func TestParseFlags_Short(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-short", "-rounds", "2"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.duration != time.Second || o.rounds != 2 || o.tokens != 1000 || o.scenarios != shortScenarios {
		t.Errorf("-short -rounds 2 = duration %v rounds %d tokens %d scenarios %q", o.duration, o.rounds, o.tokens, o.scenarios)
	}
	for _, bad := range [][]string{{"-rounds", "0"}, {"-allow-sample-rate", "2"}, {"-redis", "maybe"}, {"extra"}} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

// TestRawCodec_Decides: the load generator reads status.code and the
// presence of ok_response from real encoded responses, whatever else they
// carry.
func TestRawCodec_Decides(t *testing.T) {
	tests := []struct {
		name   string
		resp   *authv3.CheckResponse
		code   uint64
		okResp bool
	}{
		{"allowed", &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{
			OkResponse: &authv3.OkHttpResponse{HeadersToRemove: []string{"authorization"}}}}, 0, true},
		{"status only (the floor)", &authv3.CheckResponse{Status: &rpcstatus.Status{}}, 0, false},
		{"denied", &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 16, Message: "invalid_token"}, HttpResponse: &authv3.CheckResponse_DeniedResponse{
			DeniedResponse: &authv3.DeniedHttpResponse{Body: `{"error":"invalid_token"}`}}}, 16, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := proto.Marshal(tt.resp)
			if err != nil {
				t.Fatal(err)
			}
			var m rawMessage
			if err := (rawCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &m); err != nil {
				t.Fatal(err)
			}
			if m.code != tt.code || m.okResponse != tt.okResp {
				t.Errorf("decoded code %d ok_response %v, want %d %v", m.code, m.okResponse, tt.code, tt.okResp)
			}
		})
	}
	var m rawMessage
	if err := (rawCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 0x08})}, &m); err == nil {
		t.Error("a truncated response decoded without error")
	}
}
