//go:build race

package k8s_test

// raceEnabled says that the test binary runs under the race detector. The
// binaries the tests build get -race too, so that they reuse the packages
// go test has just compiled for the test instead of compiling everything a
// second time (make test runs with -race).
const raceEnabled = true
