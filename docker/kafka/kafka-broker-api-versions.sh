#!/bin/sh
# The probe apache/kafka ships (and docker-compose.yml's health check calls), same path.
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/bin/log4j2.properties \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
