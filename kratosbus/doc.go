// Package kratosbus runs the router as a Kratos transport.Server and gives the data layer a
// publisher.
package kratosbus
