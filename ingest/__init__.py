"""The ingest process: MQTT → decode and validate → batch → binary COPY → commit → acknowledge.

`ingest.pipeline` wires the stages together; each stage is a small module named after its job.
"""
