//go:build !unix

package gather

// processRuns cannot tell here: a run is taken to go on.
func processRuns(int) bool { return true }
