"""The docker-compose deployment: secrets for `.env` and MQTT device credentials."""
