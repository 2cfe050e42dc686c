package minirmq

// WithSegmentSize sets the commit-log segment size, so tests can roll and delete segments
// without writing 64 MiB each.
func WithSegmentSize(n int64) Option { return func(c *config) { c.segmentSize = n } }
