"""AWS CDK app (Python): the Lambda + API Gateway stack and the ECS Fargate alternative.

One construct per part (image asset, serverless API, Fargate service, web ACL, cdk-nag helpers);
``stacks.py`` composes them and ``app.py`` reads the settings once from CDK context.
"""

import os

# The jsii runtime (the Node process behind aws-cdk-lib) prints a banner on every start when the
# Node major version is past its end of life. Node 20 is what this project's machines run; the
# deployment docs recommend Node 22+ for deploying. Silence only that one version's banner.
_SILENCED = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"
if "20" not in os.environ.get(_SILENCED, "").split(","):
    os.environ[_SILENCED] = ",".join(filter(None, [os.environ.get(_SILENCED), "20"]))
