//go:build !race

package rmqcontainer

const raceEnabled = false
