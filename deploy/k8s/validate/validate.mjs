// Validate Kubernetes manifests (a JSON array of documents on stdin) against published schemas:
// Strimzi's CRDs (@kubernetes-models/strimzi-kafka-operator, generated from strimzi-crds 0.49/1.0)
// and the core Kubernetes kinds (kubernetes-models). Prints one JSON result per document.
import { readFileSync } from "node:fs";

const KINDS = {
  "kafka.strimzi.io/v1": "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1/",
  "kafka.strimzi.io/v1beta2": "@kubernetes-models/strimzi-kafka-operator/kafka.strimzi.io/v1beta2/",
  "apps/v1": "kubernetes-models/apps/v1/",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1/",
  "v1": "kubernetes-models/v1/",
};

const docs = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const doc of docs) {
  const base = KINDS[doc.apiVersion];
  const where = `${doc.apiVersion} ${doc.kind} ${doc.metadata && doc.metadata.name}`;
  if (!base) {
    results.push({ doc: where, ok: false, error: `no schema for apiVersion ${doc.apiVersion}` });
    continue;
  }
  try {
    const module = await import(base + doc.kind);
    new module[doc.kind](doc).validate();
    results.push({ doc: where, ok: true });
  } catch (error) {
    results.push({ doc: where, ok: false, error: String(error.message || error) });
  }
}
console.log(JSON.stringify(results));
