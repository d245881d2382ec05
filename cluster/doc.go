// Package cluster shares call ownership between several nodes of the
// whatsapp_calls module through Redis.
//
// Behind a load balancer, Meta's webhooks for one call can reach any node,
// while the call's media and bot live on the node that answered its
// connect. A Node records, in Redis:
//
//   - the dedupe key of each call id (SET NX, kept for the dedupe window),
//     so that a connect retried on any node does nothing;
//   - a lease per live call (a key holding the owner's node id, with a TTL
//     the owner refreshes while the call lives);
//   - the call itself in one hash, for the cluster-wide call list and for
//     the sweep.
//
// A hang-up that lands on another node (Meta's terminate webhook, a control
// API or Twilio REST hang-up) is forwarded to the owner on its pub/sub
// channel, and also left as a marker key that the owner's refresh loop
// picks up, should the message be lost. Other events for a call (Meta's
// answer and status webhooks of a call the owner placed) travel the same
// way with ForwardEvent, queued rather than marked, and reach the owner
// once each. When a node dies, its leases
// expire; a peer's sweep then takes each orphaned call (one peer per call,
// by SET NX) and hands it to Config.OnOrphan, which terminates it toward
// Meta.
//
// A Redis outage never touches a call in progress: calls live on their
// node, and only the bookkeeping waits. Claim then returns ErrUnavailable
// and remembers the call, and the refresh loop records it once Redis is
// back. The package never imports Caddy; it takes plain values and a
// *zap.Logger.
//
// All keys of one cluster live on one Redis server (or a primary with
// replicas); Redis Cluster is not supported, since the scripts touch
// several keys at once.
package cluster
