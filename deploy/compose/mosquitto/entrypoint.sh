#!/bin/sh
# Start Mosquitto with a password file built from the secrets in the environment (.env) and
# the operator's device credentials. Rebuilt on every start, so changing a secret in .env and
# recreating the container is all it takes; nothing secret is baked into an image or a file
# under version control.
set -eu

passwd_file=/mosquitto/data/passwd
umask 077
rm -f "$passwd_file"
mosquitto_passwd -c -b "$passwd_file" smartcity-ingest "${MQTT_INGEST_PASSWORD:?set MQTT_INGEST_PASSWORD in .env}"
mosquitto_passwd -b "$passwd_file" smartcity-api "${MQTT_API_PASSWORD:?set MQTT_API_PASSWORD in .env}"
mosquitto_passwd -b "$passwd_file" smartcity-simulator "${MQTT_SIMULATOR_PASSWORD:?set MQTT_SIMULATOR_PASSWORD in .env}"
mosquitto_passwd -b "$passwd_file" smartcity-healthcheck "${MQTT_HEALTHCHECK_PASSWORD:?set MQTT_HEALTHCHECK_PASSWORD in .env}"
# Devices: one `device_id:$7$…` line each, written by `smartcity deploy add-device`.
if [ -f /mosquitto/config/devices.passwd ]; then
  grep -Ev '^[[:space:]]*(#|$)' /mosquitto/config/devices.passwd >> "$passwd_file" || true
fi
chown mosquitto:mosquitto "$passwd_file"

exec /docker-entrypoint.sh mosquitto -c /mosquitto/config/mosquitto.conf
