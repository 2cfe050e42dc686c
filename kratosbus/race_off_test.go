//go:build !race

package kratosbus_test

const raceEnabled = false
