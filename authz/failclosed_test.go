package authz

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// allowingReasons are the only reasons that may allow a request. Any other
// declared reason that maps to Allowed fails TestReasons_EveryDeclaredReasonDenies.
var allowingReasons = []Reason{"public_route", "authorized"}

// outcomeLabels are the public outcome names: the error codes of the
// response table and "allowed".
var outcomeLabels = []string{"allowed", "missing_credentials", "invalid_token", "invalid_api_key", "forbidden", "rate_limited", "unavailable", "invalid_request"}

// parsePackage parses the package's non-test Go files.
func parsePackage(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no Go files found")
	}
	return fset, files
}

// declaredReasons returns every package-level constant of type Reason in the
// package's source, by name, with its value. It reads the source rather
// than reasonCodes, so a reason someone declared but forgot to put in the
// table is found. A constant named Reason* whose type cannot be told from
// its declaration fails the test: declare reasons as `ReasonX Reason = "x"`.
func declaredReasons(t *testing.T) map[string]Reason {
	t.Helper()
	fset, files := parsePackage(t)
	out := map[string]Reason{}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				typed := false
				if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Reason" {
					typed = true
				}
				for i, name := range vs.Names {
					var lit ast.Expr
					if i < len(vs.Values) {
						lit = vs.Values[i]
					}
					// Reason("x") is a Reason too.
					if call, ok := lit.(*ast.CallExpr); ok && len(call.Args) == 1 {
						if id, ok := call.Fun.(*ast.Ident); ok && id.Name == "Reason" {
							typed, lit = true, call.Args[0]
						}
					}
					if !typed {
						if strings.HasPrefix(name.Name, "Reason") {
							t.Errorf("%s: constant %s: declare it as `%s Reason = \"...\"` so that this test can see it", fset.Position(name.Pos()), name.Name, name.Name)
						}
						continue
					}
					bl, ok := lit.(*ast.BasicLit)
					if !ok || bl.Kind != token.STRING {
						t.Errorf("%s: reason %s must have a string literal value", fset.Position(name.Pos()), name.Name)
						continue
					}
					v, err := strconv.Unquote(bl.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[name.Name] = Reason(v)
				}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d Reason constants in the source: the parser missed them", len(out))
	}
	return out
}

// TestReasons_EveryDeclaredReasonDenies enumerates the reasons declared in
// the source, independently of reasonCodes, and proves that each maps
// through ReasonCode to a defined outcome with a public label, that only the
// listed allowing reasons allow, and that every other one has its own
// prebuilt denial with that code.
func TestReasons_EveryDeclaredReasonDenies(t *testing.T) {
	reasons := declaredReasons(t)
	ds := buildDenials()
	seen := map[Reason]string{}
	for name, r := range reasons {
		t.Run(name, func(t *testing.T) {
			if other, dup := seen[r]; dup {
				t.Errorf("value %q is also the value of %s", r, other)
			}
			seen[r] = name
			if _, ok := reasonCodes[r]; !ok {
				t.Fatalf("reason %q is not in reasonCodes: add it with the code it implies (it would be answered as internal_error)", r)
			}
			c := ReasonCode(r)
			if c == codeUnset || c >= numCodes {
				t.Fatalf("ReasonCode(%q) = %d, not a defined code", r, c)
			}
			if !slices.Contains(outcomeLabels, c.String()) {
				t.Errorf("ReasonCode(%q).String() = %q, not a public outcome label", r, c.String())
			}
			if c == Allowed {
				if !slices.Contains(allowingReasons, r) {
					t.Errorf("reason %q allows, but only %v may", r, allowingReasons)
				}
				return
			}
			if slices.Contains(allowingReasons, r) {
				t.Errorf("allowing reason %q maps to %v", r, c)
			}
			d, ok := ds.byReason[r]
			if !ok {
				t.Fatalf("no prebuilt denial for %q", r)
			}
			// Its gRPC response: envoyauthz's TestServer_EveryPrebuiltDenialDenies.
			if d.code != c || d.code.HTTPStatus() < 400 {
				t.Errorf("denial for %q: code %v, status %d", r, d.code, d.code.HTTPStatus())
			}
		})
	}
	// And the table holds nothing but declared reasons.
	for r := range reasonCodes {
		if _, ok := seen[r]; !ok {
			t.Errorf("reasonCodes holds %q, which is not a declared Reason constant", r)
		}
	}
	for _, r := range allowingReasons {
		if _, ok := seen[r]; !ok {
			t.Errorf("allowing reason %q is not declared", r)
		}
	}
}

// TestReasonCodes_IndexedOnlyByReasonCode proves that nothing but
// ReasonCode (and buildDenials, which enumerates it) reads reasonCodes, so
// that a reason missing from the table cannot turn into the zero Code
// anywhere.
func TestReasonCodes_IndexedOnlyByReasonCode(t *testing.T) {
	fset, files := parsePackage(t)
	allowed := map[string]bool{"ReasonCode": true, "buildDenials": true}
	var uses []string
	for _, f := range files {
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			ast.Inspect(fd, func(n ast.Node) bool {
				if id, ok := n.(*ast.Ident); ok && id.Name == "reasonCodes" && !allowed[fd.Name.Name] {
					uses = append(uses, fmt.Sprintf("%s in %s", fset.Position(id.Pos()), fd.Name.Name))
				}
				return true
			})
		}
	}
	if len(uses) > 0 {
		t.Errorf("reasonCodes is read outside ReasonCode; use ReasonCode, which fails closed:\n%s", strings.Join(uses, "\n"))
	}
}

// TestReasonCode_UndeclaredReasonDenies proves that a reason missing from
// the table denies as unavailable, through the lookup and through the
// prebuilt denials.
func TestReasonCode_UndeclaredReasonDenies(t *testing.T) {
	ds := buildDenials()
	for name, r := range map[string]Reason{
		"empty":                "",
		"made up":              "no_such_reason",
		"allowing in capitals": "AUTHORIZED",
		"allowing with space":  "authorized ",
		"code name":            "allowed",
	} {
		t.Run(name, func(t *testing.T) {
			if got := ReasonCode(r); got != Unavailable {
				t.Errorf("ReasonCode(%q) = %v, want unavailable", r, got)
			}
			// The gRPC status: envoyauthz's TestServer_UndeclaredReasonDenies.
			dn := ds.forDecision(&Decision{Code: ReasonCode(r), Reason: r})
			if dn.code.HTTPStatus() != 503 {
				t.Errorf("denial for %q: status %d", r, dn.code.HTTPStatus())
			}
		})
	}
}

// TestCode_ZeroValueDenies proves that a Decision whose code was never set
// is a denial everywhere a Code is read: the front ends' Allowed test, the
// client's status, the JSON body, the metrics (the gRPC status and
// response: envoyauthz's TestServer_ZeroCodeDenies).
func TestCode_ZeroValueDenies(t *testing.T) {
	var d Decision
	if d.Code == Allowed {
		t.Fatal("the zero Code is Allowed")
	}
	type outcome struct {
		Name string
		HTTP int
		Body string
	}
	dn := buildDenials().forDecision(&d)
	got := outcome{
		Name: d.Code.String(),
		HTTP: d.Code.HTTPStatus(),
		Body: string(dn.body),
	}
	want := outcome{
		Name: "unavailable",
		HTTP: 503,
		Body: `{"error":"unavailable","message":"the authorization service is temporarily unavailable"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("zero Code (-want +got):\n%s", diff)
	}
	// Metrics: counted as unavailable, and no label value of its own.
	reg := newRegistry()
	m := NewMetrics(reg)
	m.observe(TransportHTTP, MethodNone, d.Code, 0.001)
	if got := testutil.ToFloat64(m.requests[TransportHTTP][MethodNone][Unavailable]); got != 1 {
		t.Errorf("unavailable counter = %v after a zero-Code check, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "outcome" && !slices.Contains(outcomeLabels, l.GetValue()) {
					t.Errorf("%s has outcome %q", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}
