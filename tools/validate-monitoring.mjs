// Validates prometheus-operator resources (monitoring.coreos.com/v1) against the schemas
// of @kubernetes-models/prometheus-operator, generated from prometheus-operator's CRDs.
// Reads a JSON array of resources on stdin; prints one line per problem; exits 1 if any.
// scripts/k8s_validate.py calls it for the monitoring.coreos.com resources it finds.
import { readFileSync } from "node:fs";
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const resources = JSON.parse(readFileSync(0, "utf8"));
let problems = 0;
for (const resource of resources) {
  const name = `${resource.kind}/${resource.metadata?.name}`;
  const Model = resource.apiVersion === "monitoring.coreos.com/v1" ? v1[resource.kind] : undefined;
  if (Model === undefined) {
    console.log(`${name}: no schema for ${resource.apiVersion} ${resource.kind}`);
    problems += 1;
    continue;
  }
  try {
    new Model(resource).validate();
  } catch (error) {
    console.log(`${name}: ${error.message}`);
    problems += 1;
  }
}
process.exit(problems === 0 ? 0 : 1);
