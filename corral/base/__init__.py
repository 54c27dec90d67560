"""The ground floor: vocabulary and plumbing every corral package may import.

Key and queue names, settings, task states, the retry policy, device-error classification,
and the thin clients of etcd and Redis that workers, schedulers and the front door share.
Nothing here imports a package above it (`corral.tasks`, `corral.scheduler`,
`corral.workers`, `corral.pipelines`, or the front door in `corral`).
"""
