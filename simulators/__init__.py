"""Device simulators: realistic, deterministic feeds published over MQTT.

`simulators.lighting` models lamps; `simulators.clock` is the simulated clock that stamps `ts`;
`simulators.publish` is the paced QoS 1 publisher; `simulators.runner` drives a model on the
clock and hands its messages to a publisher.
"""
