#!/usr/bin/env bash
# Builds and tags the pipeline image from the repository root: docker/build.sh IMAGE[:TAG]
set -euo pipefail
image=${1:?usage: docker/build.sh IMAGE[:TAG]}
cd "$(dirname "$0")/.."
# PYTHON_IMAGE=python:...@sha256:... overrides the Dockerfile's pinned base image for this build.
docker build -f docker/Dockerfile ${PYTHON_IMAGE:+--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE"} -t "$image" .
echo "built $image; push it with: docker push $image"
echo "then pin it by the digest the push prints: vocdet compile --image ${image}@sha256:..., and the vocdet entry of k8s/kustomization.yaml"
