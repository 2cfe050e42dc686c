// Package testkit runs one test against every Watermill backend rocketbus supports.
package testkit
