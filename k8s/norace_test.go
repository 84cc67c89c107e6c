//go:build !race

package k8s_test

// raceEnabled: see race_test.go.
const raceEnabled = false
