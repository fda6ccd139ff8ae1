/** Small readers over a synthesised CloudFormation template, shared by the deploy tests. */

export interface CfnResource {
  readonly Type: string;
  readonly Properties?: Record<string, unknown>;
  readonly DependsOn?: string | string[];
}
export type Resources = Readonly<Record<string, CfnResource>>;

export function ofType(resources: Resources, type: string): Array<[string, CfnResource]> {
  return Object.entries(resources).filter(([, resource]) => resource.Type === type);
}

export function props(resource: CfnResource): Record<string, unknown> {
  return resource.Properties ?? {};
}

/** The logical id a `{Ref}` or `{Fn::GetAtt}` points at, else undefined. */
export function referencedId(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const ref = (value as { Ref?: unknown }).Ref;
  if (typeof ref === 'string') return ref;
  const getAtt = (value as { 'Fn::GetAtt'?: unknown })['Fn::GetAtt'];
  if (Array.isArray(getAtt) && typeof getAtt[0] === 'string') return getAtt[0];
  return undefined;
}

/** A flow allowed by a security group rule, named by group descriptions ("ca-a2a orchestrator"). */
export interface Flow {
  readonly direction: 'ingress' | 'egress';
  /** The group the rule belongs to. */
  readonly group: string;
  /** The other side: a group description, a CIDR or `prefix-list`. */
  readonly peer: string;
  readonly port: string;
}

function portOf(rule: Record<string, unknown>): string {
  const protocol = String(rule['IpProtocol']);
  if (protocol === '-1') return 'all';
  return rule['FromPort'] === rule['ToPort'] ? `${protocol}/${String(rule['FromPort'])}` : `${protocol}/${String(rule['FromPort'])}-${String(rule['ToPort'])}`;
}

/** Every ingress and egress rule, inline or standalone, with groups replaced by their description. */
export function securityGroupFlows(resources: Resources): Flow[] {
  const names = new Map(ofType(resources, 'AWS::EC2::SecurityGroup').map(([id, sg]) => [id, String(props(sg)['GroupDescription'])]));
  const nameOf = (value: unknown): string => {
    const id = referencedId(value);
    return (id !== undefined ? names.get(id) : undefined) ?? JSON.stringify(value);
  };
  const peerOf = (rule: Record<string, unknown>): string => {
    for (const key of ['SourceSecurityGroupId', 'DestinationSecurityGroupId']) if (rule[key] !== undefined) return nameOf(rule[key]);
    if (rule['SourcePrefixListId'] !== undefined || rule['DestinationPrefixListId'] !== undefined) return 'prefix-list';
    return String(rule['CidrIp'] ?? rule['CidrIpv6']);
  };
  const flows: Flow[] = [];
  for (const [id, sg] of ofType(resources, 'AWS::EC2::SecurityGroup')) {
    const group = names.get(id) ?? id;
    for (const rule of (props(sg)['SecurityGroupIngress'] as Record<string, unknown>[] | undefined) ?? []) {
      flows.push({ direction: 'ingress', group, peer: peerOf(rule), port: portOf(rule) });
    }
    for (const rule of (props(sg)['SecurityGroupEgress'] as Record<string, unknown>[] | undefined) ?? []) {
      flows.push({ direction: 'egress', group, peer: peerOf(rule), port: portOf(rule) });
    }
  }
  for (const [, rule] of ofType(resources, 'AWS::EC2::SecurityGroupIngress')) {
    flows.push({ direction: 'ingress', group: nameOf(props(rule)['GroupId']), peer: peerOf(props(rule)), port: portOf(props(rule)) });
  }
  for (const [, rule] of ofType(resources, 'AWS::EC2::SecurityGroupEgress')) {
    flows.push({ direction: 'egress', group: nameOf(props(rule)['GroupId']), peer: peerOf(props(rule)), port: portOf(props(rule)) });
  }
  return flows;
}

export interface ContainerDef {
  readonly Name: string;
  readonly Image?: unknown;
  readonly EntryPoint?: string[];
  readonly Command?: string[];
  readonly Essential?: boolean;
  readonly PortMappings?: Array<{ ContainerPort: number; Name?: string }>;
  readonly HealthCheck?: { Command: string[] };
  readonly DependsOn?: Array<{ ContainerName: string; Condition: string }>;
  readonly StopTimeout?: number;
  readonly ReadonlyRootFilesystem?: boolean;
  readonly User?: string;
  readonly Privileged?: boolean;
  readonly LinuxParameters?: { Capabilities?: { Drop?: string[]; Add?: string[] } };
  readonly LogConfiguration?: { LogDriver: string; Options: Record<string, unknown> };
  readonly Environment?: Array<{ Name: string; Value: unknown }>;
  readonly Secrets?: Array<{ Name: string; ValueFrom: unknown }>;
  readonly MountPoints?: Array<{ ContainerPath: string; SourceVolume: string; ReadOnly?: boolean }>;
}

/** Task definitions by family (`ca-a2a-orchestrator` …). */
export function taskDefinitions(resources: Resources): Map<string, { id: string; resource: CfnResource; containers: ContainerDef[] }> {
  return new Map(ofType(resources, 'AWS::ECS::TaskDefinition').map(([id, resource]) => [
    String(props(resource)['Family']),
    { id, resource, containers: props(resource)['ContainerDefinitions'] as ContainerDef[] },
  ]));
}

/** Every logical id mentioned anywhere inside a value (Ref, GetAtt, resolve strings). */
export function mentionedIds(value: unknown, ids: ReadonlySet<string>): Set<string> {
  const text = JSON.stringify(value);
  return new Set([...ids].filter((id) => text.includes(`"${id}"`) || text.includes(`:${id}:`)));
}
