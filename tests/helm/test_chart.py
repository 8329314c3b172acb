"""Chart tests: lint and render charts/stevedore with the real Helm SDK (helm-python-sdk
binds Helm v4's Go library, shipped inside the wheel), validate every rendered manifest
against the Kubernetes 1.33 schemas (kubernetes-validate), and check what the chart
promises: the CLI contract, security settings, RBAC equal to the controller's API_CALLS.

Run with scripts/test-helm.sh (installs the tools into a venv); no cluster, no network.
"""

import copy
import json
import pathlib
import re
import unittest

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stevedore"
RBAC_RS = ROOT / "src" / "cluster" / "rbac.rs"
KUBE_VERSION = "1.33.0"
NAMESPACE = "kube-system"
RELEASE = "stevedore"

# The value sets every structural test runs over.
VALUE_SETS = {
    "default": {"clusterName": "prod"},
    "fake-no-servicemonitor": {
        "clusterName": "kind",
        "provider": "fake",
        "replicaCount": 1,
        "leaderElection": {"enabled": False},
        "dryRun": True,
        "logFormat": "text",
        "metrics": {"serviceMonitor": {"enabled": False}},
        "podAntiAffinity": "none",
        "avoidManagedNodes": False,
    },
    # `--provider simulated` with leader election: Nodes and node heartbeats like fake.
    "simulated-leader": {
        "clusterName": "sim",
        "provider": "simulated",
        "metrics": {"serviceMonitor": {"enabled": False}},
    },
    "aws-irsa-servicemonitor-nodepools": {
        "clusterName": "prod-eu",
        "aws": {"roleArn": "arn:aws:iam::123456789012:role/stevedore-controller"},
        "settings": {
            "scanInterval": "15s",
            "region": "eu-west-1",
            "zones": ["eu-west-1a", "eu-west-1b"],
            "aws": {"interruptionQueue": "stevedore-prod-eu"},
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
        "dashboard": {"enabled": True},
        "defaultNodePool": {"enabled": True},
        "nodePools": {
            "gpu": {
                "weight": 10,
                "template": {
                    "spec": {
                        "requirements": [
                            {
                                "key": "karpenter.k8s.aws/instance-gpu-manufacturer",
                                "operator": "In",
                                "values": ["nvidia"],
                            }
                        ],
                        "taints": [
                            {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
                        ],
                    }
                },
                "limits": {"nvidia.com/gpu": "16"},
                "headroom": {
                    "maxUtilization": {"cpu": 0.8},
                    "spare": {"nvidia.com/gpu": 1, "cpu": "4", "memory": "16Gi"},
                    "placeholderSize": {"cpu": "1", "memory": "4Gi"},
                },
            }
        },
        "podAntiAffinity": "preferred",
    },
}

# What the controller's engineer documented it calls, used only while src/cluster/rbac.rs
# does not exist yet: (verb, group, resource) and whether only the fake provider needs it.
DOCUMENTED_CALLS = {
    **{(v, g, r): False for r, g in [("pods", ""), ("nodes", ""), ("nodepools", "stevedore.dev"),
                                     ("nodeclaims", "stevedore.dev"),
                                     ("poddisruptionbudgets", "policy"), ("daemonsets", "apps")]
       for v in ("list", "watch")},
    ("create", "", "pods/eviction"): False,
    ("create", "", "events"): False,
    ("patch", "", "nodes"): False,
    ("delete", "", "nodes"): False,
    ("create", "stevedore.dev", "nodeclaims"): False,
    ("patch", "stevedore.dev", "nodeclaims"): False,
    ("patch", "stevedore.dev", "nodeclaims/status"): False,
    ("delete", "stevedore.dev", "nodeclaims"): False,
    ("get", "coordination.k8s.io", "leases"): False,
    ("create", "coordination.k8s.io", "leases"): False,
    ("update", "coordination.k8s.io", "leases"): False,
    ("create", "", "nodes"): True,
}


def render(values, namespace=NAMESPACE):
    """Rendered manifests as {template path: [documents]} (empty documents dropped)."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    docs = {}
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        parsed = [d for d in yaml.safe_load_all(text) if d]
        if parsed:
            docs[path] = parsed
    return docs


def objects(values):
    return [d for ds in render(values).values() for d in ds]


def one(objs, kind, name=RELEASE):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def crd_schemas():
    """{(group, kind): openAPIV3Schema} from the chart's crds/, when they exist."""
    schemas = {}
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.crds
    for f in files:
        for doc in yaml.safe_load_all(f["data"] if "data" in f else f.get("content", "")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                schemas[(f'{spec["group"]}/{v["name"]}', spec["names"]["kind"])] = v["schema"][
                    "openAPIV3Schema"
                ]
    return schemas


# Where each `Namespace::` scope of API_CALLS is granted: ClusterRole (None) or a Role in a
# namespace ("release" = the release namespace).
SCOPES = {"Any": None, "Release": "release", "NodeLease": "kube-node-lease"}


def rbac_calls_from_rust():
    """Parses API_CALLS in src/cluster/rbac.rs:
    {(verb, group, resource[/sub], scope): node_making_only}, scope as in SCOPES' values.
    A call is only for the providers that create Nodes (fake, simulated) when it sits under
    a comment starting "Providers that create Nodes"."""
    text = RBAC_RS.read_text()
    body = text[text.index("pub const API_CALLS"):]
    body = body[: body.index("];")]
    calls = {}
    fake = False
    in_comment = False
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("//"):
            # The first line of a comment block says whom the calls below are for.
            if not in_comment:
                fake = line.lstrip("/ ").startswith("Providers that create Nodes")
            in_comment = True
            continue
        in_comment = False
        m = re.match(
            r'call\("([a-z]+)",\s*"([^"]*)",\s*"([^"]+)",\s*"([^"]*)"\)'
            r"(?:\.in_namespace\(Namespace::(\w+)\))?,$",
            line,
        )
        if m:
            verb, group, res, sub, scope = m.groups()
            calls[(verb, group, f"{res}/{sub}" if sub else res, SCOPES[scope or "Any"])] = fake
        else:
            assert not line.startswith("call("), f"unparsed API_CALLS entry: {line}"
    assert calls, "no call(...) entries parsed from API_CALLS"
    return calls


def granted(objs):
    """(verb, group, resource, scope) granted by the chart's ClusterRoles (scope None) and
    Roles (scope "release" for the release namespace, else the Role's namespace)."""
    out = set()
    for o in objs:
        if o["kind"] not in ("ClusterRole", "Role"):
            continue
        scope = None
        if o["kind"] == "Role":
            ns = o["metadata"]["namespace"]
            scope = "release" if ns == NAMESPACE else ns
        for rule in o["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        out.add((v, g, r, scope))
    return out


class ChartTest(unittest.TestCase):
    maxDiff = None

    def test_lint_is_clean_for_every_value_set(self):
        for name, values in VALUE_SETS.items():
            with self.subTest(values=name):
                report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE,
                                   kube_version="v" + KUBE_VERSION)
                self.assertEqual(report["errors"], [])
                # Severity 2 = warning, 3 = error; 1 (info, e.g. "icon is recommended") is fine.
                bad = [m for m in report["messages"] if m["severity"] >= 2]
                self.assertEqual(bad, [], f"lint findings for {name}")

    def test_every_manifest_validates_against_kubernetes_schemas(self):
        crds = crd_schemas()
        for name, values in VALUE_SETS.items():
            for path, docs in render(values).items():
                for doc in docs:
                    with self.subTest(values=name, template=path, kind=doc["kind"]):
                        key = (doc["apiVersion"], doc["kind"])
                        if doc["apiVersion"].startswith("stevedore.dev/"):
                            if key not in crds:
                                self.skipTest(f"{key}: no CRD in charts/stevedore/crds/ yet")
                            jsonschema.Draft7Validator(crds[key]).validate(doc)
                        elif doc["apiVersion"].startswith("monitoring.coreos.com/"):
                            # The Prometheus Operator's CRD is not shipped here; its use
                            # is checked in test_service_monitor_scrapes_the_metrics_port.
                            self.assertEqual(doc["kind"], "ServiceMonitor")
                        else:
                            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)

    def test_the_validator_rejects_a_broken_manifest(self):
        # Guards the test above against validating nothing.
        dep = copy.deepcopy(one(objects(VALUE_SETS["default"]), "Deployment"))
        dep["spec"]["replicas"] = "two"
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)
        dep = copy.deepcopy(one(objects(VALUE_SETS["default"]), "Deployment"))
        dep["spec"]["template"]["spec"]["containers"][0]["probe"] = {}
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)

    def test_the_crd_schema_rejects_a_broken_node_pool(self):
        crds = crd_schemas()
        key = ("stevedore.dev/v1", "NodePool")
        if key not in crds:
            self.skipTest("charts/stevedore/crds/ has no NodePool CRD yet")
        pools = [o for o in objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"]) if o["kind"] == "NodePool"]
        pool = copy.deepcopy(pools[0])
        jsonschema.Draft7Validator(crds[key]).validate(pool)
        pool["spec"]["weight"] = "high"
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(crds[key]).validate(pool)
        # spec.headroom is in the schema, typed.
        pool = copy.deepcopy(next(p for p in pools if p["metadata"]["name"] == "gpu"))
        jsonschema.Draft7Validator(crds[key]).validate(pool)
        pool["spec"]["headroom"]["maxUtilization"]["cpu"] = "most"
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.Draft7Validator(crds[key]).validate(pool)

    def test_deployment_follows_the_cli_contract_and_runs_locked_down(self):
        objs = objects(VALUE_SETS["default"])
        dep = one(objs, "Deployment")
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        (c,) = pod["containers"]
        self.assertEqual(spec["replicas"], 2)
        self.assertEqual(pod["priorityClassName"], "system-cluster-critical")
        self.assertEqual(
            c["args"],
            [
                "run",
                "--config=/etc/stevedore/config.yaml",
                "--provider=aws",
                "--cluster-name=prod",
                "--namespace=$(POD_NAMESPACE)",
                "--metrics-addr=0.0.0.0:8080",
                "--leader-elect=true",
                "--log-format=json",
            ],
        )
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace")
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        self.assertEqual(c["ports"][0]["containerPort"], 8080)
        sc, psc = c["securityContext"], pod["securityContext"]
        self.assertTrue(psc["runAsNonRoot"])
        self.assertNotEqual(psc["runAsUser"], 0)
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertIn("memory", c["resources"]["limits"])
        self.assertIn("cpu", c["resources"]["requests"])
        anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(anti[0]["topologyKey"], "kubernetes.io/hostname")
        self.assertEqual(anti[0]["labelSelector"]["matchLabels"], spec["selector"]["matchLabels"])
        managed = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        self.assertIn({"key": "stevedore.dev/nodepool", "operator": "DoesNotExist"},
                      managed["nodeSelectorTerms"][0]["matchExpressions"])
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        self.assertTrue(mounts["/etc/stevedore"]["readOnly"])
        cm_name = next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)
        self.assertEqual(cm_name, one(objs, "ConfigMap")["metadata"]["name"])

    def test_value_sets_change_what_they_should(self):
        fake = one(objects(VALUE_SETS["fake-no-servicemonitor"]), "Deployment")
        pod = fake["spec"]["template"]["spec"]
        args = pod["containers"][0]["args"]
        self.assertIn("--provider=fake", args)
        self.assertIn("--dry-run", args)
        self.assertIn("--leader-elect=false", args)
        self.assertIn("--log-format=text", args)
        self.assertNotIn("affinity", pod)
        aws = objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"])
        pod = one(aws, "Deployment")["spec"]["template"]["spec"]
        self.assertIn("preferredDuringSchedulingIgnoredDuringExecution", pod["affinity"]["podAntiAffinity"])
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        self.assertEqual(env["AWS_REGION"], "eu-west-1")

    def test_settings_reach_the_configmap_as_a_settings_document(self):
        aws = objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"])
        cfg = yaml.safe_load(one(aws, "ConfigMap")["data"]["config.yaml"])
        self.assertEqual(cfg["apiVersion"], "stevedore.dev/v1")
        self.assertEqual(cfg["kind"], "Settings")
        self.assertEqual(cfg["region"], "eu-west-1")
        self.assertEqual(cfg["zones"], ["eu-west-1a", "eu-west-1b"])
        self.assertEqual(cfg["scanInterval"], "15s")
        # The aws block gets the cluster's name unless it sets one itself.
        self.assertEqual(cfg["aws"], {"interruptionQueue": "stevedore-prod-eu", "clusterName": "prod-eu"})
        own = copy.deepcopy(VALUE_SETS["aws-irsa-servicemonitor-nodepools"])
        own["settings"]["aws"]["clusterName"] = "other"
        cfg = yaml.safe_load(one(objects(own), "ConfigMap")["data"]["config.yaml"])
        self.assertEqual(cfg["aws"]["clusterName"], "other")
        # Without an aws block none is invented (a Settings parser without the AWS
        # provider rejects unknown fields).
        cfg = yaml.safe_load(one(objects(VALUE_SETS["default"]), "ConfigMap")["data"]["config.yaml"])
        self.assertNotIn("aws", cfg)
        # A settings change rolls the pods.
        default = one(objects(VALUE_SETS["default"]), "Deployment")
        annotation = lambda d: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        self.assertNotEqual(annotation(default), annotation(one(aws, "Deployment")))

    def test_service_account_carries_the_irsa_role_only_when_given(self):
        aws = one(objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"]), "ServiceAccount")
        self.assertEqual(aws["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
                         "arn:aws:iam::123456789012:role/stevedore-controller")
        default = one(objects(VALUE_SETS["default"]), "ServiceAccount")
        self.assertNotIn("annotations", default["metadata"])

    def test_service_monitor_scrapes_the_metrics_port(self):
        objs = objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"])
        sm, svc = one(objs, "ServiceMonitor"), one(objs, "Service")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kps")
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"])
        self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(svc["metadata"]["labels"][k], v)
        self.assertEqual(sm["spec"]["namespaceSelector"]["matchNames"], [NAMESPACE])
        self.assertEqual([o for o in objects(VALUE_SETS["default"]) if o["kind"] == "ServiceMonitor"], [])

    def test_service_and_pdb_select_the_controller_pods(self):
        objs = objects(VALUE_SETS["default"])
        pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        for kind, sel in [("Service", lambda o: o["spec"]["selector"]),
                          ("PodDisruptionBudget", lambda o: o["spec"]["selector"]["matchLabels"])]:
            for k, v in sel(one(objs, kind)).items():
                self.assertEqual(pod_labels.get(k), v, kind)
        self.assertEqual(one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"], 1)

    def test_node_pools_are_rendered_and_valid_for_stevedore(self):
        objs = objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"])
        pools = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NodePool"}
        self.assertEqual(sorted(pools), ["default", "gpu"])
        self.assertEqual(pools["gpu"]["spec"]["limits"], {"nvidia.com/gpu": "16"})
        self.assertEqual(pools["default"]["apiVersion"], "stevedore.dev/v1")
        self.assertEqual([o for o in objects(VALUE_SETS["default"]) if o["kind"] == "NodePool"], [])

    def test_dashboard_configmap_holds_the_dashboard(self):
        objs = objects(VALUE_SETS["aws-irsa-servicemonitor-nodepools"])
        cm = one(objs, "ConfigMap", RELEASE + "-dashboard")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        dash = json.loads(cm["data"]["stevedore.json"])
        self.assertEqual(dash, json.loads((CHART / "dashboards" / "stevedore.json").read_text()))
        titles = {p["title"] for p in dash["panels"]}
        for t in ["Pending (unschedulable) pods", "Nodes by capacity type",
                  "Hourly cost vs lower bound", "Decision latency (p50 / p99)", "Disruptions by reason"]:
            self.assertIn(t, titles)

    def test_bad_values_fail_with_a_clear_message(self):
        cases = [
            ({}, "clusterName is required"),
            ({"clusterName": "x", "leaderElection": {"enabled": False}}, "leaderElection"),
            ({"clusterName": "x", "provider": "gce"}, "provider"),
            ({"clusterName": "x", "replicaCount": 0}, "replicaCount"),
            ({"clusterName": "x", "aws": {"roleArn": "not-an-arn"}}, "roleArn"),
            ({"clusterName": "x", "unknownKey": 1}, "unknownKey"),
        ]
        for values, needle in cases:
            with self.subTest(values=values):
                with self.assertRaises(helm.HelmError) as ctx:
                    render(values)
                self.assertIn(needle, str(ctx.exception))

    def test_rbac_grants_exactly_the_controllers_api_calls(self):
        if RBAC_RS.exists():
            expected, source = rbac_calls_from_rust(), "src/cluster/rbac.rs"
        else:
            expected, source = DOCUMENTED_CALLS, "the documented expectation (rbac.rs absent)"
        if not RBAC_RS.exists():
            # The documented expectation predates namespace scopes: leases in the release
            # namespace, everything else cluster-wide.
            expected = {(*c, "release" if c[2] == "leases" else None): f
                        for c, f in expected.items()}
        for values_name, provider in [("default", "aws"), ("fake-no-servicemonitor", "fake"),
                                      ("simulated-leader", "simulated")]:
            with self.subTest(provider=provider, source=source):
                values = VALUE_SETS[values_name]
                objs = objects(values)
                makes_nodes = provider in ("fake", "simulated")
                want = {c for c, only in expected.items() if makes_nodes or not only}
                if not values.get("leaderElection", {}).get("enabled", True):
                    want = {c for c in want if c[3] != "release"}
                self.assertEqual(granted(objs), want)
                for o in objs:
                    if o["kind"] != "Role":
                        continue
                    if o["metadata"]["namespace"] == NAMESPACE:
                        # The leader Lease: get and update by name only.
                        named = [ru for ru in o["rules"] if "update" in ru["verbs"]]
                        self.assertEqual(named[0]["resourceNames"], ["stevedore-leader"])
                    else:
                        self.assertTrue(makes_nodes, o["metadata"])
                        self.assertEqual(o["metadata"]["namespace"], "kube-node-lease")

    def test_crds_when_present_are_valid_definitions(self):
        with helm.Chart.load(str(CHART)) as chart:
            files = chart.crds
        if not files:
            self.skipTest("charts/stevedore/crds/ is empty: `stevedore crds` has not written it yet")
        kinds = set()
        for f in files:
            for doc in yaml.safe_load_all(f.get("data") or f.get("content", "")):
                if doc:
                    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                    kinds.add(doc["spec"]["names"]["kind"])
        self.assertLessEqual({"NodePool", "NodeClaim"}, kinds)


if __name__ == "__main__":
    unittest.main()
