"""An optional regional AWS WAFv2 web ACL (context ``waf=true``) for the API stage or the ALB.

Off by default: a web ACL costs $5/month plus $1/month per rule and $0.60 per million requests,
which is more than the whole serverless stack at low traffic. Stage throttling, the usage plan
and strict request validation in the application are the baseline; turn WAF on when the
endpoint is exposed to untrusted traffic at scale.
"""

from __future__ import annotations

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

# AWS-managed rule groups that fit a JSON prediction API (no SQL, no uploads, no PHP).
MANAGED_RULE_GROUPS: tuple[str, ...] = (
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
    "AWSManagedRulesAmazonIpReputationList",
)

# Per source IP, per 5 minutes: far above any honest client of a scoring API.
RATE_LIMIT_PER_IP = 2000


class RegionalWebAcl(Construct):
    """A web ACL with the managed groups above plus a per-IP rate limit, attached to one ARN."""

    def __init__(self, scope: Construct, construct_id: str, *, resource_arn: str) -> None:
        super().__init__(scope, construct_id)
        metric_prefix = construct_id.replace("-", "")

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True,
                metric_name=f"{metric_prefix}{name}",
                sampled_requests_enabled=True,
            )

        rules: list[wafv2.CfnWebACL.RuleProperty] = [
            wafv2.CfnWebACL.RuleProperty(
                name=group,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=group
                    )
                ),
                visibility_config=visibility(group),
            )
            for priority, group in enumerate(MANAGED_RULE_GROUPS)
        ]
        rules.append(
            wafv2.CfnWebACL.RuleProperty(
                name="RateLimitPerIp",
                priority=len(MANAGED_RULE_GROUPS),
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=RATE_LIMIT_PER_IP
                    )
                ),
                visibility_config=visibility("RateLimitPerIp"),
            )
        )
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=visibility("WebAcl"),
            rules=rules,
        )
        wafv2.CfnWebACLAssociation(
            self, "Association", resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )
