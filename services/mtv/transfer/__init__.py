"""Transfer workers: a consumer group copying one disk per request, with progress and checkpoints.

Modules, outside in: `worker` (the Kafka loop: pause, job thread, commit, rebalances), `cancels`,
`job` (one disk: resume decision, events), `checkpoint`, `copier` (the data path), `sources` and
`vsphere`, `sinks`, `https`, `progress`, `throttle`, `spec` (the request as dataclasses),
`settings`, `errors` (the failure tree and its codes).
"""
