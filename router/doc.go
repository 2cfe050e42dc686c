// Package router offers typed message handlers and codecs over any Watermill Publisher and
// Subscriber.
package router
