#!/usr/bin/env bash
# Vendor the JSON Schemas of the Strimzi custom resources k8s/ uses (Kafka, KafkaNodePool,
# KafkaTopic, KafkaUser) into k8s/schemas/, for `make deploy-check` to validate against offline.
#
# Strimzi publishes no CRD files to the package registries, but it does publish its API
# model (io.strimzi:api) and the CRD generator its own build runs (io.strimzi:crd-generator)
# to Maven Central. This runs that generator with the arguments Strimzi's build uses for its
# install files (api/pom.xml, execution generate-crd-co-install-v1), then keeps each served
# version's openAPIV3Schema. Needs Maven and Java 21 or newer (Strimzi 1.x is built for 21).
# Run it again after changing strimzi.version in k8s/schemas/strimzi/pom.xml.
set -euo pipefail
cd "$(dirname "$0")/.."

java_bin=""
for candidate in "${JAVA_HOME:-}/bin/java" /usr/lib/jvm/temurin-25-jdk-amd64/bin/java "$(command -v java || true)"; do
    if [ -x "$candidate" ] && [ "$("$candidate" -XshowSettings:properties -version 2>&1 \
        | sed -n 's/.*java.specification.version = //p')" -ge 21 ]; then
        java_bin="$candidate"
        break
    fi
done
[ -n "$java_bin" ] || { echo "vendor-strimzi-schemas: needs Java 21 or newer (set JAVA_HOME)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mvn -q -f k8s/schemas/strimzi/pom.xml dependency:build-classpath -Dmdep.outputFile="$work/classpath"
"$java_bin" -cp "$(cat "$work/classpath")" io.strimzi.crdgenerator.CrdGenerator \
    --label app:strimzi --label strimzi.io/crd-install:true \
    --target-kube 1.16+ --crd-api-version v1 \
    --api-versions v1 --storage-version v1 \
    --yaml \
    io.strimzi.api.kafka.model.kafka.Kafka="$work/040-Crd-kafka.yaml" \
    io.strimzi.api.kafka.model.topic.KafkaTopic="$work/043-Crd-kafkatopic.yaml" \
    io.strimzi.api.kafka.model.user.KafkaUser="$work/044-Crd-kafkauser.yaml" \
    io.strimzi.api.kafka.model.nodepool.KafkaNodePool="$work/045-Crd-kafkanodepool.yaml"
rm -rf k8s/schemas/kafka.strimzi.io
python3 scripts/crd_to_jsonschema.py k8s/schemas "$work"/*.yaml
