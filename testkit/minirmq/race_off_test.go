//go:build !race

package minirmq_test

const raceEnabled = false
