#!/usr/bin/env bash
# Once per AWS account: the bucket that keeps a flosssweep cluster's results, and the two IAM
# instance profiles cluster/config.yaml names.
#   flosssweep-worker  read and write that bucket, nothing else
#   flosssweep-head    the same, plus EC2 (Ray's autoscaler starts and stops the workers) and
#                      passing flosssweep-worker on to the instances it starts
# Usage: bash cluster/aws-iam.sh BUCKET [REGION]   (needs the AWS CLI, logged in as an IAM admin)
# Running it again changes nothing that exists already.
set -euo pipefail
bucket=${1:?usage: bash cluster/aws-iam.sh BUCKET [REGION]}
region=${2:-$(aws configure get region || echo us-west-2)}
account=$(aws sts get-caller-identity --query Account --output text)

if ! aws s3api head-bucket --bucket "$bucket" 2> /dev/null; then
    if [ "$region" = us-east-1 ]; then
        aws s3api create-bucket --bucket "$bucket" --region "$region"
    else
        aws s3api create-bucket --bucket "$bucket" --region "$region" \
            --create-bucket-configuration LocationConstraint="$region"
    fi
    aws s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
        BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
fi

trust='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
bucket_access=$(cat <<EOF
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":["s3:ListBucket","s3:GetBucketLocation"],"Resource":"arn:aws:s3:::$bucket"},
 {"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:AbortMultipartUpload"],
  "Resource":"arn:aws:s3:::$bucket/*"}]}
EOF
)
pass_worker=$(cat <<EOF
{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iam:PassRole","Resource":"arn:aws:iam::$account:role/flosssweep-worker"},
 {"Effect":"Allow","Action":"iam:GetInstanceProfile","Resource":"arn:aws:iam::$account:instance-profile/flosssweep-*"}]}
EOF
)

for name in flosssweep-worker flosssweep-head; do
    aws iam get-role --role-name "$name" > /dev/null 2>&1 ||
        aws iam create-role --role-name "$name" --assume-role-policy-document "$trust" > /dev/null
    aws iam put-role-policy --role-name "$name" --policy-name bucket --policy-document "$bucket_access"
    if ! aws iam get-instance-profile --instance-profile-name "$name" > /dev/null 2>&1; then
        aws iam create-instance-profile --instance-profile-name "$name" > /dev/null
        aws iam add-role-to-instance-profile --instance-profile-name "$name" --role-name "$name"
    fi
done
aws iam attach-role-policy --role-name flosssweep-head --policy-arn arn:aws:iam::aws:policy/AmazonEC2FullAccess
aws iam put-role-policy --role-name flosssweep-head --policy-name pass-worker --policy-document "$pass_worker"
echo "bucket s3://$bucket and instance profiles flosssweep-head, flosssweep-worker are ready;"
echo "set FLOSSSWEEP_BUCKET=$bucket in cluster/config.yaml (the line marked EDIT in setup_commands)"
