// Package usage counts usage where it is known (workers: requests, rows,
// errors, compute share, latency; helix-authz: throttled requests) and
// reports it to helix-authz's usage ledger.
//
// An Aggregator sums counts in memory per (hour, client, model); a
// Reporter drains it every interval into a numbered batch and sends the
// batch to a Sink (helix-authz's Ledger gRPC service, or helix-authz's
// store in process) until the Sink acknowledges it. A batch is never
// changed once numbered and at most one batch is outstanding: while it is
// unacknowledged new counts keep summing in the Aggregator. The Sink
// applies a batch and records (reporter, seq) in one transaction, so a
// resend after a lost answer is not counted twice. A process killed
// without a last flush loses the counts of at most one interval (more
// when the ledger has been unreachable since).
package usage
