"""The leader-elected brain: election, etcd store, ingress, placement, the state machine."""
