import type { AllocateCidrRequest, IIpAddresses, SubnetIpamOptions, VpcIpamOptions } from 'aws-cdk-lib/aws-ec2';

/**
 * Gives the VPC and its subnets the CIDRs the seed's network plan names, instead of the
 * sequential /24s CDK would carve out: firewall rules and runbooks elsewhere quote these ranges.
 * `subnetCidrs` maps a subnet group name to one CIDR per availability zone, in zone order.
 */
export class FixedSubnetCidrs implements IIpAddresses {
  readonly #vpcCidr: string;
  readonly #subnetCidrs: Readonly<Record<string, readonly string[]>>;

  constructor(vpcCidr: string, subnetCidrs: Readonly<Record<string, readonly string[]>>) {
    this.#vpcCidr = vpcCidr;
    this.#subnetCidrs = subnetCidrs;
  }

  allocateVpcCidr(): VpcIpamOptions {
    return { cidrBlock: this.#vpcCidr };
  }

  allocateSubnetsCidr(input: AllocateCidrRequest): SubnetIpamOptions {
    const seen = new Map<string, number>();
    const allocatedSubnets = input.requestedSubnets.map((subnet) => {
      const group = subnet.configuration.name;
      const index = seen.get(group) ?? 0;
      seen.set(group, index + 1);
      const cidr = this.#subnetCidrs[group]?.[index];
      if (cidr === undefined) throw new Error(`no CIDR planned for subnet group '${group}' #${index + 1}`);
      return { cidr };
    });
    return { allocatedSubnets };
  }
}
