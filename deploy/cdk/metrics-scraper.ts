import { readFileSync } from 'node:fs';
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as aps from 'aws-cdk-lib/aws-aps';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { stringify } from 'yaml';
import { APP_USER, addScratch, hardenedLinux } from './container-defaults.js';

/** The alert rules promtool checks and tests; Amazon Managed Prometheus evaluates the same file. */
export const ALERT_RULES_FILE = new URL('../prometheus/alerts.yaml', import.meta.url);

export interface MetricsScraperProps {
  readonly cluster: ecs.ICluster;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly logRetention: logs.RetentionDays;
  readonly collectorImage: string;
}

/**
 * The only party allowed to reach a sidecar's admin listener: an ADOT collector that discovers
 * sidecar tasks through the ECS API (docker labels PROMETHEUS_EXPORTER_*), scrapes /metrics and
 * remote-writes to an Amazon Managed Prometheus workspace that evaluates deploy/prometheus rules.
 */
export class MetricsScraper extends Construct {
  readonly workspace: aps.CfnWorkspace;
  readonly service: ecs.FargateService;

  constructor(scope: Construct, id: string, props: MetricsScraperProps) {
    super(scope, id);
    const region = Stack.of(this).region;
    this.workspace = new aps.CfnWorkspace(this, 'Workspace', { alias: 'ca-a2a' });
    new aps.CfnRuleGroupsNamespace(this, 'AlertRules', {
      workspace: this.workspace.attrArn,
      name: 'ca-a2a',
      data: readFileSync(ALERT_RULES_FILE, 'utf8'),
    });

    const task = new ecs.FargateTaskDefinition(this, 'Task', { family: 'ca-a2a-metrics-scraper', cpu: 256, memoryLimitMiB: 512 });
    task.addToTaskRolePolicy(new iam.PolicyStatement({
      actions: ['aps:RemoteWrite'],
      resources: [this.workspace.attrArn],
    }));
    task.addToTaskRolePolicy(new iam.PolicyStatement({
      // ECS discovery: these read-only calls do not support resource-level permissions.
      actions: ['ecs:ListTasks', 'ecs:ListServices', 'ecs:DescribeServices', 'ecs:DescribeTasks', 'ecs:DescribeTaskDefinition', 'ecs:DescribeContainerInstances', 'ec2:DescribeInstances'],
      resources: ['*'],
    }));

    const logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: '/ca-a2a/metrics-scraper',
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const container = task.addContainer('collector', {
      image: ecs.ContainerImage.fromRegistry(props.collectorImage),
      essential: true,
      user: APP_USER,
      readonlyRootFilesystem: true,
      privileged: false,
      linuxParameters: hardenedLinux(this, 'Linux'),
      environment: { AOT_CONFIG_CONTENT: collectorConfig(props.cluster.clusterName, region, this.workspace.attrPrometheusEndpoint) },
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'collector' }),
    });
    addScratch(task, container, 'tmp');

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: 'ca-a2a-metrics-scraper',
      cluster: props.cluster,
      taskDefinition: task,
      desiredCount: 1,
      securityGroups: [props.securityGroup],
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      assignPublicIp: false,
      circuitBreaker: { rollback: true },
      minHealthyPercent: 0,
    });
  }
}

/** ADOT collector configuration; tokens (cluster name, endpoint) resolve at deploy time. */
function collectorConfig(clusterName: string, region: string, workspaceEndpoint: string): string {
  const targetsFile = '/tmp/ecs_sd_targets.yaml';
  return stringify({
    extensions: {
      sigv4auth: { region, service: 'aps' },
      ecs_observer: {
        cluster_name: clusterName,
        cluster_region: region,
        result_file: targetsFile,
        refresh_interval: '30s',
        docker_labels: [{
          port_label: 'PROMETHEUS_EXPORTER_PORT',
          metrics_path_label: 'PROMETHEUS_EXPORTER_PATH',
          job_name_label: 'PROMETHEUS_EXPORTER_JOB_NAME',
        }],
      },
    },
    receivers: {
      prometheus: {
        config: {
          scrape_configs: [{
            job_name: 'ca-a2a-sidecar',
            scrape_interval: '15s',
            file_sd_configs: [{ files: [targetsFile], refresh_interval: '30s' }],
          }],
        },
      },
    },
    exporters: {
      prometheusremotewrite: {
        endpoint: `${workspaceEndpoint}api/v1/remote_write`,
        auth: { authenticator: 'sigv4auth' },
      },
    },
    service: {
      extensions: ['ecs_observer', 'sigv4auth'],
      pipelines: { metrics: { receivers: ['prometheus'], exporters: ['prometheusremotewrite'] } },
    },
  }, { lineWidth: 0 });
}
