#!/usr/bin/env bash
# Build the bsm_nb image and push it to Amazon ECR, creating the repository if it is missing.
#
#   docker/build_and_push.sh <image-name> [tag]          (tag defaults to latest)
#
# Region: AWS_REGION, else AWS_DEFAULT_REGION, else `aws configure get region`.
# Account: `aws sts get-caller-identity`.
# BSM_DOCKER_PLATFORM (default linux/amd64, what SageMaker's x86 instances run) and BSM_DOCKER_BUILD_ARGS
# (extra `docker build` arguments, split on spaces) adjust the build. BSM_BASE_IMAGE is the Dockerfile's BASE_IMAGE,
# best given by digest for a reproducible build (debian:bookworm-slim@sha256:<64 hex digits>; `docker buildx imagetools
# inspect debian:bookworm-slim` shows it). In SageMaker Studio the build runs on the `sagemaker` network, the only one
# Studio's Docker allows.
# Prints the pushed image URI as its last line.
set -euo pipefail

die() { echo "build_and_push.sh: $*" >&2; exit 1; }

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 <image-name> [tag]" >&2
    exit 64
fi
image="$1"
tag="${2:-latest}"
# ECR's rules for repository names and tags
[[ "$image" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] \
    || die "image name '$image' is not a valid ECR repository name: expected lowercase letters and digits, separated by . _ - or /"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
    || die "tag '$tag' is not a valid image tag: expected up to 128 letters, digits, _ . or -, not starting with . or -"

if [[ "${BSM_BASE_IMAGE:-}" == *@* && ! "$BSM_BASE_IMAGE" =~ @sha256:[0-9a-f]{64}$ ]]; then
    die "BSM_BASE_IMAGE '$BSM_BASE_IMAGE' is not a valid digest reference: expected NAME@sha256: and 64 hex digits"
fi

command -v docker > /dev/null 2>&1 || die "docker is not installed or not on PATH; install Docker (in SageMaker Studio, enable Docker access for the domain)"
command -v aws > /dev/null 2>&1 || die "the AWS CLI ('aws') is not installed or not on PATH; install AWS CLI v2"

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
if [[ -z "$region" ]]; then region="$(aws configure get region 2> /dev/null || true)"; fi
[[ -n "$region" ]] \
    || die "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or run 'aws configure set region <region>'"
account="$(aws sts get-caller-identity --query Account --output text)" \
    || die "could not read the AWS account with 'aws sts get-caller-identity': are AWS credentials configured?"
[[ "$account" =~ ^[0-9]{12}$ ]] \
    || die "'aws sts get-caller-identity' returned '$account', not a 12-digit AWS account id"

domain="amazonaws.com"
if [[ "$region" == cn-* ]]; then domain="amazonaws.com.cn"; fi
registry="${account}.dkr.ecr.${region}.${domain}"
uri="${registry}/${image}:${tag}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

build_args=(--platform "${BSM_DOCKER_PLATFORM:-linux/amd64}" --build-arg "BSM_IMAGE=$uri")
if [[ -n "${BSM_BASE_IMAGE:-}" ]]; then build_args+=(--build-arg "BASE_IMAGE=$BSM_BASE_IMAGE"); fi
if [[ -f /opt/ml/metadata/resource-metadata.json ]]; then build_args+=(--network sagemaker); fi
if [[ -n "${BSM_DOCKER_BUILD_ARGS:-}" ]]; then
    read -r -a extra <<< "$BSM_DOCKER_BUILD_ARGS"
    build_args+=("${extra[@]}")
fi

echo "building ${image}:${tag} from $repo_root"
docker build "${build_args[@]}" -f "$repo_root/docker/Dockerfile" -t "${image}:${tag}" "$repo_root"

if ! aws ecr describe-repositories --region "$region" --repository-names "$image" > /dev/null 2>&1; then
    echo "creating ECR repository $image in $region"
    aws ecr create-repository --region "$region" --repository-name "$image" \
        --image-scanning-configuration scanOnPush=true > /dev/null
fi

aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry"
docker tag "${image}:${tag}" "$uri"
docker push "$uri"
echo "$uri"
