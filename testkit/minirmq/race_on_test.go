//go:build race

package minirmq_test

const raceEnabled = true
