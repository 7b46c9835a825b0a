#!/usr/bin/env bash
# Builds and tags the pipeline image from the repository root: docker/build.sh IMAGE[:TAG]
set -euo pipefail
image=${1:?usage: docker/build.sh IMAGE[:TAG]}
cd "$(dirname "$0")/.."
docker build -f docker/Dockerfile -t "$image" .
echo "built $image; push it with: docker push $image"
