# Local observability services for ampel-monitor (include from the Makefile:
#   include scripts/observability.mk). Data and downloads live under
# $(AMPEL_CACHE), default ~/.cache/ampel-monitor; every service binds to 127.0.0.1.
#   obs-up / obs-down   Prometheus (19090) + Alertmanager (19094), Debian packages
#   es-up / es-down     single-node Elasticsearch (19200), integ-test-zip from Maven
# WIPE=1 with a -down target also deletes the data directories.

OBS_SCRIPT := scripts/observability.sh
ES_SCRIPT := scripts/elasticsearch.sh
OBS_STOP_FLAGS := $(if $(filter 1 yes true,$(WIPE)),--wipe,)

.PHONY: obs-up obs-down es-up es-down

obs-up:
	bash $(OBS_SCRIPT) install
	bash $(OBS_SCRIPT) start
	bash $(OBS_SCRIPT) wait

obs-down:
	bash $(OBS_SCRIPT) stop $(OBS_STOP_FLAGS)

es-up:
	bash $(ES_SCRIPT) fetch
	bash $(ES_SCRIPT) start
	bash $(ES_SCRIPT) wait

es-down:
	bash $(ES_SCRIPT) stop $(OBS_STOP_FLAGS)
