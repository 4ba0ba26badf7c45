# Local infrastructure for streaming runs and integration tests (include from the Makefile).
# Everything is downloaded/built once into $(AMPEL_CACHE) (default ~/.cache/ampel-monitor),
# outside the clone. Ports, versions and paths: see the usage text of each script.

INFRA_DIR := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: kafka-up kafka-down kafka-status kafka-wipe prism flink-job-server

# Single-node KRaft broker on 127.0.0.1:$KAFKA_PORT (default 19092); returns when it answers.
kafka-up:
	bash $(INFRA_DIR)kafka.sh start

kafka-down:
	bash $(INFRA_DIR)kafka.sh stop

kafka-status:
	bash $(INFRA_DIR)kafka.sh status

# Stop and delete the broker's data dir.
kafka-wipe:
	bash $(INFRA_DIR)kafka.sh stop --wipe

# Beam Prism runner binary for the installed apache-beam (--prism_location).
prism:
	bash $(INFRA_DIR)prism.sh build

# Beam Flink job-server jar (--flink_job_server_jar).
flink-job-server:
	bash $(INFRA_DIR)flink-job-server.sh fetch
