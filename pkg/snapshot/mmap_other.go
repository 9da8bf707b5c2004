//go:build !linux

package snapshot

const mmapPopulate = 0
