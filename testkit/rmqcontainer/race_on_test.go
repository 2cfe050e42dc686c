//go:build race

package rmqcontainer

const raceEnabled = true
