"""``python -m infra_cdk``: what ``cdk.json`` runs for ``cdk synth`` / ``cdk deploy``."""

from infra_cdk.app import main

main()
