import { readFileSync } from 'node:fs';
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as aps from 'aws-cdk-lib/aws-aps';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { stringify } from 'yaml';
import { ECR_PUBLIC_CACHE_PREFIX } from './config.js';
import { APP_USER, addScratch, appLogs, hardenedLinux, thirdPartyLogs } from './container-defaults.js';
import { PRIVATE_SUBNET_SELECTION } from './network.js';

/** The alert rules promtool checks and tests; Amazon Managed Prometheus evaluates the same file. */
export const ALERT_RULES_FILE = new URL('../prometheus/alerts.yaml', import.meta.url);

export interface MetricsScraperProps {
  readonly cluster: ecs.ICluster;
  readonly securityGroup: ec2.ISecurityGroup;
  readonly logRetention: logs.RetentionDays;
  /** `public.ecr.aws/REPOSITORY:TAG` (config.ts checks it), pulled through this account's ECR. */
  readonly collectorImage: string;
  /** Our image (deploy/Dockerfile), which declares VOLUME /tmp: it opens the collector's scratch volume. */
  readonly image: ecs.ContainerImage;
}

/**
 * The only party allowed to reach a sidecar's admin listener: an ADOT collector that discovers
 * sidecar tasks through the ECS API (docker labels PROMETHEUS_EXPORTER_*), scrapes /metrics and
 * remote-writes to an Amazon Managed Prometheus workspace that evaluates deploy/prometheus rules
 * and sends the alerts that fire to an SNS topic operators subscribe to.
 */
export class MetricsScraper extends Construct {
  readonly workspace: aps.CfnWorkspace;
  readonly service: ecs.FargateService;
  /** Where firing alerts go (the workspace's alert manager publishes here). */
  readonly alertsTopic: sns.Topic;

  constructor(scope: Construct, id: string, props: MetricsScraperProps) {
    super(scope, id);
    const region = Stack.of(this).region;
    this.alertsTopic = new sns.Topic(this, 'Alerts', {
      displayName: 'ca-a2a alerts',
      masterKey: new kms.Key(this, 'AlertsKey', { description: 'ca-a2a alerts topic', enableKeyRotation: true }),
      enforceSSL: true,
    });
    // Without an alert manager definition the workspace evaluates the rules and notifies no one.
    this.workspace = new aps.CfnWorkspace(this, 'Workspace', {
      alias: 'ca-a2a',
      alertManagerDefinition: alertManagerConfig(this.alertsTopic.topicArn, region),
    });
    this.#letWorkspacePublish();
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
    // ECS discovery. The describe calls that take a resource are held to this cluster's tasks,
    // services and container instances (the long ARN format names the cluster).
    const inCluster = (resource: string): string => Stack.of(this).formatArn({ service: 'ecs', resource, resourceName: `${props.cluster.clusterName}/*` });
    task.addToTaskRolePolicy(new iam.PolicyStatement({
      actions: ['ecs:DescribeTasks', 'ecs:DescribeServices', 'ecs:DescribeContainerInstances'],
      resources: ['task', 'service', 'container-instance'].map(inCluster),
    }));
    task.addToTaskRolePolicy(new iam.PolicyStatement({
      // Listing (ARNs only) and reading task definitions and instances: no resource-level permissions.
      actions: ['ecs:ListTasks', 'ecs:ListServices', 'ecs:DescribeTaskDefinition', 'ec2:DescribeInstances'],
      resources: ['*'],
    }));

    const logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: '/ca-a2a/metrics-scraper',
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const container = task.addContainer('collector', {
      image: this.#throughPullCache(props.collectorImage, task),
      essential: true,
      user: APP_USER,
      readonlyRootFilesystem: true,
      privileged: false,
      linuxParameters: hardenedLinux(this, 'Linux'),
      environment: { AOT_CONFIG_CONTENT: collectorConfig(props.cluster.clusterName, region, this.workspace.attrPrometheusEndpoint) },
      logging: thirdPartyLogs(logGroup, 'collector'),
    });
    addScratch(task, container, 'tmp');
    this.#openScratch(task, container, props.image, logGroup);

    this.service = new ecs.FargateService(this, 'Service', {
      serviceName: 'ca-a2a-metrics-scraper',
      cluster: props.cluster,
      taskDefinition: task,
      desiredCount: 1,
      securityGroups: [props.securityGroup],
      vpcSubnets: PRIVATE_SUBNET_SELECTION,
      assignPublicIp: false,
      circuitBreaker: { rollback: true },
      minHealthyPercent: 0,
    });
  }

  /**
   * The collector writes the tasks it discovers to /tmp, a scratch volume that Fargate mounts
   * root-owned 0755 because its image declares no VOLUME there, so its user could not. A one-shot
   * container of our image makes it world-writable (sticky) first: as root, because only the owner
   * may change a directory's mode, and with no capability, because the owner needs none to.
   */
  #openScratch(task: ecs.TaskDefinition, collector: ecs.ContainerDefinition, image: ecs.ContainerImage, logGroup: logs.ILogGroup): void {
    const init = task.addContainer('scratch-init', {
      image,
      // Both said: the image's CMD (--help) after `node -e …` would make node print its help instead.
      entryPoint: ['node'],
      command: ['-e', "require('node:fs').chmodSync('/tmp', 0o1777)"],
      essential: false,
      user: '0:0',
      readonlyRootFilesystem: true,
      privileged: false,
      linuxParameters: hardenedLinux(this, 'InitLinux'),
      logging: appLogs(logGroup, 'scratch-init'),
    });
    init.addMountPoints({ sourceVolume: 'tmp', containerPath: '/tmp', readOnly: false });
    collector.addContainerDependencies({ container: init, condition: ecs.ContainerDependencyCondition.SUCCESS });
  }

  /**
   * The collector's image from Amazon ECR Public, pulled through this account's ECR (a
   * pull-through cache rule under ECR_PUBLIC_CACHE_PREFIX), so over the ECR and S3 endpoints
   * every task uses: the scraper has no way to the internet. The first pull creates the cached
   * repository, for which the execution role needs CreateRepository and BatchImportUpstreamImage.
   */
  #throughPullCache(publicImage: string, task: ecs.TaskDefinition): ecs.ContainerImage {
    const [repository = '', tag = ''] = publicImage.slice('public.ecr.aws/'.length).split(':');
    const rule = new ecr.CfnPullThroughCacheRule(this, 'EcrPublicCache', {
      ecrRepositoryPrefix: ECR_PUBLIC_CACHE_PREFIX,
      upstreamRegistry: 'ecr-public',
      upstreamRegistryUrl: 'public.ecr.aws',
    });
    const cached = `${ECR_PUBLIC_CACHE_PREFIX}/${repository}`;
    task.obtainExecutionRole().addToPrincipalPolicy(new iam.PolicyStatement({
      actions: ['ecr:CreateRepository', 'ecr:BatchImportUpstreamImage'],
      resources: [Stack.of(this).formatArn({ service: 'ecr', resource: 'repository', resourceName: cached })],
    }));
    const image = ecs.ContainerImage.fromEcrRepository(ecr.Repository.fromRepositoryName(this, 'CollectorRepository', cached), tag);
    task.node.addDependency(rule);
    return image;
  }

  /** The workspace's alert manager, and nothing else, may publish to the topic and use its key. */
  #letWorkspacePublish(): void {
    const aps = new iam.ServicePrincipal('aps.amazonaws.com');
    const { account, region, partition } = Stack.of(this);
    this.alertsTopic.addToResourcePolicy(new iam.PolicyStatement({
      principals: [aps],
      actions: ['sns:Publish', 'sns:GetTopicAttributes'],
      resources: [this.alertsTopic.topicArn],
      conditions: { ArnEquals: { 'aws:SourceArn': this.workspace.attrArn }, StringEquals: { 'aws:SourceAccount': account } },
    }));
    // The key policy is part of the key, which the topic and so the workspace depend on: naming
    // the workspace's own ARN here would be a cycle, so any workspace of this account and region.
    this.alertsTopic.masterKey?.addToResourcePolicy(new iam.PolicyStatement({
      principals: [aps],
      actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
      resources: ['*'],
      conditions: { ArnLike: { 'aws:SourceArn': `arn:${partition}:aps:${region}:${account}:workspace/*` }, StringEquals: { 'aws:SourceAccount': account } },
    }));
  }
}

/**
 * Amazon Managed Prometheus' alert manager format: `alertmanager_config` holds an Alertmanager
 * configuration whose receivers may only be SNS topics (signed with the workspace's SigV4).
 */
function alertManagerConfig(topicArn: string, region: string): string {
  const config = {
    route: {
      receiver: 'sns',
      group_by: ['alertname', 'service', 'backend'],
      group_wait: '30s',
      group_interval: '5m',
      repeat_interval: '4h',
    },
    receivers: [{
      name: 'sns',
      sns_configs: [{ topic_arn: topicArn, sigv4: { region } }],
    }],
  };
  return stringify({ alertmanager_config: stringify(config, { lineWidth: 0 }) }, { lineWidth: 0 });
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
