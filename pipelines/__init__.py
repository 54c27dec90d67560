"""Algorithm pipelines (M9): the pipeline file, its plan, sources and sinks.

The driver that submits a run lives at the front door: `corral.pipeline_run`.
"""
