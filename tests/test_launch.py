"""`bsm_nb.launch`, `bsm_nb.hosting` and `bsm_nb.registry` against moto, an offline AWS: the exact requests that start
training, hosting, tuning, batch transform and the model registry, and the metric regexes on training logs."""
import dataclasses, datetime, json, re
from pathlib import Path
from types import SimpleNamespace

import pytest

from bsm_nb.config import BSMConfig, config_from_dict
from bsm_nb import hosting, launch, registry
from bsm_nb.launch import metric_definitions, metrics_from_log

REGION, BUCKET = 'us-east-1', 'bsm-test-bucket'
IMAGE = f'123456789012.dkr.ecr.{REGION}.amazonaws.com/bsm-nb:test'
LOGS = Path(__file__).parent/'fixtures'/'train_logs'
TRUST = {'Version': '2012-10-17', 'Statement': [
    {'Effect': 'Allow', 'Principal': {'Service': 'sagemaker.amazonaws.com'}, 'Action': 'sts:AssumeRole'}]}

CFG = BSMConfig(id_name='case_id', text_name=['message'], cat_field_list=['marketplace', 'order_status'],
                tab_field_list=['order_amount', 'days_since_order'], lr=3e-5, fusion='gated', max_epochs=4,
                reinit_pooler=True, metric_choices=['auroc', 'f1_score'])


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """moto with an execution role and a bucket; `calls(op)` lists the parameters of each `op` request,
    `ops()` every operation in order."""
    env = {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_SESSION_TOKEN': 'testing',
           'AWS_DEFAULT_REGION': REGION, 'AWS_REGION': REGION, 'SAGEMAKER_VALIDATE_ROLE': 'false',
           # keep the developer's own AWS files out
           'AWS_CONFIG_FILE': str(tmp_path/'aws_config'),
           'AWS_SHARED_CREDENTIALS_FILE': str(tmp_path/'aws_credentials')}
    for k, v in env.items(): monkeypatch.setenv(k, v)
    monkeypatch.delenv('AWS_PROFILE', raising=False)
    import boto3
    from moto import mock_aws
    with mock_aws():
        boto = boto3.Session(region_name=REGION)
        requests = []
        # every client made from `boto` afterwards reports the parameters of each call before sending it
        boto.events.register('before-parameter-build.*.*',
                             lambda params, model, **kw: requests.append((model.name, params)))
        role = boto.client('iam').create_role(RoleName='bsm-sagemaker',
                                              AssumeRolePolicyDocument=json.dumps(TRUST))['Role']['Arn']
        boto.client('s3').create_bucket(Bucket=BUCKET)
        yield SimpleNamespace(boto=boto, role=role, sm=boto.client('sagemaker'), s3=boto.client('s3'),
                              calls=lambda op: [p for name, p in requests if name == op],
                              ops=lambda: [name for name, _ in requests])


def sdk_session(aws):
    from sagemaker.core.helper.session_helper import Session
    return Session(boto_session=aws.boto, default_bucket=BUCKET)


def upload_tree(aws, tmp_path):
    for channel in ('train', 'val'):
        (tmp_path/channel).mkdir()
        (tmp_path/channel/f'{channel}.csv').write_text('case_id,message,label\nc1,hello,0\n')
    return launch.upload_channels(aws.s3, {'train': tmp_path/'train', 'val': tmp_path/'val'}, BUCKET, 'bsm/data/run1')


def test_upload_channels_writes_each_channel_under_its_prefix(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    assert uris == {'train': f's3://{BUCKET}/bsm/data/run1/train/', 'val': f's3://{BUCKET}/bsm/data/run1/val/'}
    keys = [o['Key'] for o in aws.s3.list_objects_v2(Bucket=BUCKET)['Contents']]
    assert sorted(keys) == ['bsm/data/run1/train/train.csv', 'bsm/data/run1/val/val.csv']
    # a sagemaker Session works as well as a client
    assert (launch.upload_channels(sdk_session(aws), {'test': tmp_path/'val'}, BUCKET, 'p')
            == {'test': f's3://{BUCKET}/p/test/'})


def test_spot_training_job_request(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, instance_type='ml.g5.2xlarge', instance_count=1, spot=True,
                                  max_run_s=3600, max_wait_s=5400, checkpoint_s3_uri=f's3://{BUCKET}/bsm/ckpt/run1',
                                  output_s3_uri=f's3://{BUCKET}/bsm/models/', environment={'NCCL_DEBUG': 'WARN'},
                                  tags={'project': 'bsm'}, sagemaker_session=sdk_session(aws))
    job = launch.launch_training(trainer, uris)

    [req] = aws.calls('CreateTrainingJob')
    assert req['TrainingJobName'] == job.training_job_name and req['TrainingJobName'].startswith('bsm-')
    algo = req['AlgorithmSpecification']
    assert algo['TrainingImage'] == IMAGE and algo['TrainingInputMode'] == 'File'
    assert 'ContainerEntrypoint' not in algo # SageMaker runs the image's own entrypoint with `train`
    assert algo['MetricDefinitions'] == metric_definitions(['auroc', 'f1_score'])
    assert req['RoleArn'] == aws.role
    assert req['ResourceConfig'] == {'InstanceType': 'ml.g5.2xlarge', 'InstanceCount': 1, 'VolumeSizeInGB': 30}
    assert {c['ChannelName']: c['DataSource']['S3DataSource']['S3Uri'] for c in req['InputDataConfig']} == uris
    assert config_from_dict(req['HyperParameters']) == CFG
    assert req['EnableManagedSpotTraining'] is True
    assert req['StoppingCondition'] == {'MaxRuntimeInSeconds': 3600, 'MaxWaitTimeInSeconds': 5400}
    assert req['CheckpointConfig'] == {'S3Uri': f's3://{BUCKET}/bsm/ckpt/run1/', 'LocalPath': '/opt/ml/checkpoints'}
    assert req['OutputDataConfig']['S3OutputPath'] == f's3://{BUCKET}/bsm/models/'
    assert req['Environment'] == {'NCCL_DEBUG': 'WARN'}
    assert {'Key': 'project', 'Value': 'bsm'} in req['Tags']

    # and what the service recorded
    d = aws.sm.describe_training_job(TrainingJobName=job.training_job_name)
    assert d['AlgorithmSpecification']['TrainingImage'] == IMAGE
    assert d['EnableManagedSpotTraining'] is True
    assert d['StoppingCondition']['MaxWaitTimeInSeconds'] == 5400
    assert d['CheckpointConfig']['LocalPath'] == '/opt/ml/checkpoints'
    assert config_from_dict(d['HyperParameters']) == CFG
    assert (launch.model_data_uri(job.training_job_name, aws.sm)
            == f's3://{BUCKET}/bsm/models/{job.training_job_name}/output/model.tar.gz')


def test_on_demand_training_job_has_no_spot_settings(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, max_run_s=7200, sagemaker_session=sdk_session(aws))
    launch.launch_training(trainer, {'train': uris['train']})
    [req] = aws.calls('CreateTrainingJob')
    assert not req.get('EnableManagedSpotTraining')
    assert req['StoppingCondition'] == {'MaxRuntimeInSeconds': 7200}
    assert 'CheckpointConfig' not in req
    assert req['ResourceConfig']['InstanceType'] == 'ml.g5.xlarge'
    assert [c['ChannelName'] for c in req['InputDataConfig']] == ['train']


def test_spot_without_a_checkpoint_uri_gets_one_per_job(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, spot=True, sagemaker_session=sdk_session(aws))
    job = launch.launch_training(trainer, uris)
    [req] = aws.calls('CreateTrainingJob')
    assert req['CheckpointConfig']['S3Uri'].startswith(f's3://{BUCKET}/')
    assert job.training_job_name in req['CheckpointConfig']['S3Uri']
    assert req['StoppingCondition'] == {'MaxRuntimeInSeconds': 86400, 'MaxWaitTimeInSeconds': 172800}


def test_training_and_tuning_take_the_same_job_settings():
    "`make_trainer` and `tuning_job_request` take `JobSettings`' parameters, with its defaults, as keywords."
    import inspect
    settings = [(p.name, p.default) for p in inspect.signature(launch.JobSettings).parameters.values()]
    for f in (launch.make_trainer, launch.tuning_job_request):
        params = inspect.signature(f).parameters.values()
        assert [(p.name, p.default) for p in params if p.kind == p.KEYWORD_ONLY] == settings, f.__name__
        assert 'kwargs' not in inspect.signature(f).parameters


def test_deploy_then_delete_endpoint(aws):
    model_data = f's3://{BUCKET}/bsm/models/job-1/output/model.tar.gz'
    names = hosting.deploy_endpoint(model_data, IMAGE, aws.role, 'bsm-test', instance_type='ml.m5.xlarge',
                                   environment={'MODEL_SERVER_TIMEOUT': 120}, sagemaker_client=aws.sm)
    [model] = aws.calls('CreateModel')
    assert model['ModelName'] == names['model_name'] and model['ExecutionRoleArn'] == aws.role
    assert model['PrimaryContainer'] == {'Image': IMAGE, 'ModelDataUrl': model_data,
                                         'Environment': {'MODEL_SERVER_TIMEOUT': '120'}}
    [config] = aws.calls('CreateEndpointConfig')
    assert config['EndpointConfigName'] == names['endpoint_config_name']
    assert config['ProductionVariants'] == [{'VariantName': 'AllTraffic', 'ModelName': names['model_name'],
                                             'InstanceType': 'ml.m5.xlarge', 'InitialInstanceCount': 1,
                                             'InitialVariantWeight': 1.0}]
    assert aws.calls('CreateEndpoint') == [{'EndpointName': 'bsm-test',
                                            'EndpointConfigName': names['endpoint_config_name']}]
    assert aws.sm.describe_model(ModelName=names['model_name'])['PrimaryContainer']['ModelDataUrl'] == model_data
    assert aws.sm.describe_endpoint(EndpointName='bsm-test')['EndpointConfigName'] == names['endpoint_config_name']

    deleted = hosting.delete_endpoint('bsm-test', aws.sm)
    assert deleted['model_names'] == [names['model_name']]
    from botocore.exceptions import ClientError
    for call in (lambda: aws.sm.describe_endpoint(EndpointName='bsm-test'),
                 lambda: aws.sm.describe_endpoint_config(EndpointConfigName=names['endpoint_config_name']),
                 lambda: aws.sm.describe_model(ModelName=names['model_name'])):
        with pytest.raises(ClientError): call()


def test_invoke_endpoint_sends_json_records_and_parses_the_answer(aws):
    import requests
    answer = {'predictions': [{'id': 'c1', 'probability': 0.91, 'label': 1}]} # bsm-serve's JSON answer
    # moto's runtime answers from a queue filled through its own API (intercepted, nothing leaves the machine)
    requests.post('http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results',
                  json={'region': REGION, 'results': [
        {'Body': json.dumps(answer), 'ContentType': 'application/json', 'InvokedProductionVariant': 'AllTraffic'}]})
    records = [{'case_id': 'c1', 'message': 'Where is my parcel?', 'order_amount': 12.5}]
    runtime = aws.boto.client('sagemaker-runtime')
    assert hosting.invoke_endpoint('bsm-test', records, runtime_client=runtime) == answer
    [req] = aws.calls('InvokeEndpoint')
    assert ((req['EndpointName'], req['ContentType'], req['Accept'])
            == ('bsm-test', 'application/json', 'application/json'))
    assert json.loads(req['Body']) == records


def test_tuning_job_request(aws):
    channels = {'train': f's3://{BUCKET}/d/train/', 'val': f's3://{BUCKET}/d/val/'}
    req = launch.tuning_job_request('bsm-hpo-test', IMAGE, aws.role, CFG, channels, f's3://{BUCKET}/bsm/hpo/',
                                    max_jobs=6, max_parallel_jobs=3, spot=True, max_run_s=3600)
    arn = launch.submit_tuning_job(req, aws.sm)
    assert arn.endswith('hyper-parameter-tuning-job/bsm-hpo-test')
    assert aws.calls('CreateHyperParameterTuningJob') == [req]

    d = aws.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName='bsm-hpo-test')
    conf, job = d['HyperParameterTuningJobConfig'], d['TrainingJobDefinition']
    assert conf['HyperParameterTuningJobObjective'] == {'Type': 'Maximize', 'MetricName': 'val_auroc'}
    assert conf['ResourceLimits'] == {'MaxNumberOfTrainingJobs': 6, 'MaxParallelTrainingJobs': 3}
    assert (conf['ParameterRanges']['ContinuousParameterRanges']
            == [{'Name': 'lr', 'MinValue': '1e-05', 'MaxValue': '0.0001', 'ScalingType': 'Logarithmic'}])
    assert conf['ParameterRanges']['IntegerParameterRanges'][0]['Name'] == 'reinit_layers'
    assert conf['ParameterRanges']['CategoricalParameterRanges'] == [{'Name': 'fusion', 'Values': ['concat', 'gated']}]
    assert job['AlgorithmSpecification']['TrainingImage'] == IMAGE
    assert job['AlgorithmSpecification']['MetricDefinitions'] == metric_definitions(CFG.metric_choices)
    assert job['EnableManagedSpotTraining'] is True
    assert job['StoppingCondition'] == {'MaxRuntimeInSeconds': 3600, 'MaxWaitTimeInSeconds': 7200}
    assert [c['DataSource']['S3DataSource']['S3Uri'] for c in job['InputDataConfig']] == list(channels.values())
    # a trial's hyperparameters, static plus tuned (and SageMaker's objective key), give back a valid config
    trial = {**job['StaticHyperParameters'], 'lr': '4.2e-05', 'reinit_layers': '1', 'fusion': 'concat',
             '_tuning_objective_metric': 'val_auroc'}
    got = config_from_dict(trial)
    assert (got.lr, got.reinit_layers, got.fusion) == (4.2e-05, 1, 'concat')
    assert config_from_dict({**trial, 'lr': str(CFG.lr), 'reinit_layers': '0', 'fusion': 'gated'}) == CFG
    assert launch.best_training_job('bsm-hpo-test', aws.sm)['name'] # moto answers with a placeholder trial


def test_batch_transform_request(aws):
    hosting.create_model('bsm-model-1', f's3://{BUCKET}/m/model.tar.gz', IMAGE, aws.role, sagemaker_client=aws.sm)
    req = hosting.batch_transform_request('bsm-transform-1', 'bsm-model-1', f's3://{BUCKET}/score/in/',
                                          f's3://{BUCKET}/score/out/',
                                         instance_type='ml.m5.xlarge', environment={'MODEL_SERVER_WORKERS': 1})
    arn = hosting.submit_transform_job(req, aws.sm)
    assert arn.endswith('transform-job/bsm-transform-1')
    assert aws.calls('CreateTransformJob') == [req]
    d = aws.sm.describe_transform_job(TransformJobName='bsm-transform-1')
    assert d['ModelName'] == 'bsm-model-1'
    assert d['TransformInput']['ContentType'] == 'application/jsonlines' and d['TransformInput']['SplitType'] == 'Line'
    assert d['TransformOutput']['S3OutputPath'] == f's3://{BUCKET}/score/out/'
    assert d['TransformResources'] == {'InstanceType': 'ml.m5.xlarge', 'InstanceCount': 1}
    assert d['Environment'] == {'MODEL_SERVER_WORKERS': '1'}


# --- the GPU driver of hosting and batch transform ---------------------------------------------------------------

MODEL_DATA = f's3://{BUCKET}/bsm/models/job-1/output/model.tar.gz'
SCORE_IN, SCORE_OUT = f's3://{BUCKET}/score/in/', f's3://{BUCKET}/score/out/'


# moto knows the instance types of its own release (g4dn, p3, inf1, not g5):
# the notebook checks ml.g5, g6e and p4d offline
@pytest.mark.parametrize('instance_type, ami', [
    ('ml.g4dn.xlarge', 'al2-ami-sagemaker-inference-gpu-3-1'),
    ('ml.g4dn.12xlarge', 'al2-ami-sagemaker-inference-gpu-3-1'),
    ('ml.p3.2xlarge', 'al2-ami-sagemaker-inference-gpu-3-1'), ('ml.m5.xlarge', None), ('ml.c5.2xlarge', None),
    ('ml.inf1.xlarge', None)])
def test_gpu_endpoints_ask_for_a_cuda_12_driver(aws, instance_type, ami):
    "The default AMI of g4dn/g5/p4d endpoints has driver 470 (CUDA 11.4); the image's CUDA 12 needs >= 525."
    names = hosting.deploy_endpoint(MODEL_DATA, IMAGE, aws.role, 'bsm-test', instance_type=instance_type,
                                    sagemaker_client=aws.sm)
    [config] = aws.calls('CreateEndpointConfig')
    [variant] = config['ProductionVariants']
    assert (variant['InstanceType'], variant.get('InferenceAmiVersion')) == (instance_type, ami)
    assert aws.sm.describe_endpoint_config(
        EndpointConfigName=names['endpoint_config_name'])['ProductionVariants'][0]['InstanceType'] == instance_type


def test_endpoint_ami_version_can_be_chosen_or_left_out(aws):
    hosting.deploy_endpoint(MODEL_DATA, IMAGE, aws.role, 'bsm-a', instance_type='ml.g4dn.xlarge',
                           inference_ami_version='al2023-ami-sagemaker-inference-gpu-4-1', sagemaker_client=aws.sm)
    hosting.deploy_endpoint(MODEL_DATA, IMAGE, aws.role, 'bsm-b', instance_type='ml.g4dn.xlarge',
                            inference_ami_version='', sagemaker_client=aws.sm)
    chosen, left_out = [c['ProductionVariants'][0] for c in aws.calls('CreateEndpointConfig')]
    assert chosen['InferenceAmiVersion'] == 'al2023-ami-sagemaker-inference-gpu-4-1'
    assert left_out['InstanceType'] == 'ml.g4dn.xlarge' and 'InferenceAmiVersion' not in left_out


@pytest.mark.parametrize('instance_type, ami', [('ml.g5.xlarge', 'al2-ami-sagemaker-batch-gpu-535'),
                                                ('ml.p3.2xlarge', 'al2-ami-sagemaker-batch-gpu-535'),
                                                ('ml.m5.xlarge', None), ('ml.c5.xlarge', None)])
def test_gpu_transform_jobs_ask_for_a_cuda_12_driver(aws, instance_type, ami):
    hosting.create_model('bsm-model-1', MODEL_DATA, IMAGE, aws.role, sagemaker_client=aws.sm)
    hosting.submit_transform_job(hosting.batch_transform_request('bsm-transform-1', 'bsm-model-1', SCORE_IN, SCORE_OUT,
                                                                 instance_type=instance_type), aws.sm)
    [sent] = aws.calls('CreateTransformJob')
    assert ((sent['TransformResources']['InstanceType'], sent['TransformResources'].get('TransformAmiVersion'))
            == (instance_type, ami))


def test_transform_ami_version_can_be_chosen_or_left_out(aws):
    chosen = hosting.batch_transform_request('t-1', 'm', SCORE_IN, SCORE_OUT,
                                             transform_ami_version='al2-ami-sagemaker-batch-gpu-470')
    left_out = hosting.batch_transform_request('t-2', 'm', SCORE_IN, SCORE_OUT, transform_ami_version='')
    hosting.create_model('m', MODEL_DATA, IMAGE, aws.role, sagemaker_client=aws.sm)
    for req in (chosen, left_out): hosting.submit_transform_job(req, aws.sm)
    sent = [r['TransformResources'] for r in aws.calls('CreateTransformJob')]
    assert sent == [{'InstanceType': 'ml.g5.xlarge', 'InstanceCount': 1,
                     'TransformAmiVersion': 'al2-ami-sagemaker-batch-gpu-470'},
                    {'InstanceType': 'ml.g5.xlarge', 'InstanceCount': 1}]


# --- TensorBoard -----------------------------------------------------------------------------------------------

TB_FOLDER = r'bsm-[0-9]{8}-[0-9]{6}/' # one folder per trainer: <base_job_name>-<timestamp>/


def test_training_job_uploads_its_tensorboard_logs(aws, tmp_path):
    """`train` logs to /opt/ml/output/tensorboard (tests/test_train.py finds the events there);
    the job must upload that folder."""
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, output_s3_uri=f's3://{BUCKET}/bsm/models/',
                                  sagemaker_session=sdk_session(aws))
    job = launch.launch_training(trainer, uris)
    [req] = aws.calls('CreateTrainingJob')
    tb = req['TensorBoardOutputConfig']
    assert tb['LocalPath'] == '/opt/ml/output/tensorboard'
    assert re.fullmatch(rf's3://{BUCKET}/bsm/models/tensorboard/{TB_FOLDER}', tb['S3OutputPath']), tb
    assert job.training_job_name.startswith('bsm-')


def test_tensorboard_root_can_be_chosen_or_the_upload_turned_off(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    for root in (f's3://{BUCKET}/tb/', ''):
        launch.launch_training(launch.make_trainer(IMAGE, aws.role, CFG, tensorboard_s3_uri=root,
                                                   sagemaker_session=sdk_session(aws)), uris)
    chosen, off = aws.calls('CreateTrainingJob')
    assert re.fullmatch(rf's3://{BUCKET}/tb/{TB_FOLDER}', chosen['TensorBoardOutputConfig']['S3OutputPath'])
    assert 'TensorBoardOutputConfig' not in off
    with pytest.raises(ValueError, match="tensorboard_s3_uri 'tb/' is not an S3 URI"):
        launch.make_trainer(IMAGE, aws.role, CFG, tensorboard_s3_uri='tb/', sagemaker_session=sdk_session(aws))


def test_tensorboard_logs_default_to_the_sessions_output_path(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    launch.launch_training(launch.make_trainer(IMAGE, aws.role, CFG, sagemaker_session=sdk_session(aws)), uris)
    [req] = aws.calls('CreateTrainingJob')
    out = req['OutputDataConfig']['S3OutputPath'].rstrip('/')
    assert out.startswith(f's3://{BUCKET}/')
    assert re.fullmatch(rf'{re.escape(out)}/tensorboard/{TB_FOLDER}', req['TensorBoardOutputConfig']['S3OutputPath'])


# --- VPC, network isolation and KMS keys ------------------------------------------------------------------------

SUBNETS, GROUPS = ['subnet-0a1b2c3d4e5f6a7b8', 'subnet-1a2b3c4d5e6f7a8b9'], ['sg-0a1b2c3d4e5f6a7b8']
VPC = {'Subnets': SUBNETS, 'SecurityGroupIds': GROUPS}
VOLUME_KEY = 'arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab'
OUTPUT_KEY = 'alias/bsm-output'


def locked_down()->launch.Security:
    "What a VPC-only Studio domain with KMS policies sets."
    return launch.Security(subnets=SUBNETS, security_group_ids=GROUPS, network_isolation=True,
                           encrypt_inter_container_traffic=True, volume_kms_key=VOLUME_KEY, output_kms_key=OUTPUT_KEY)


def test_training_job_in_a_vpc_with_kms_keys(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, instance_type='ml.m5.xlarge', instance_count=2,
                                  output_s3_uri=f's3://{BUCKET}/bsm/models/', security=locked_down(),
                                  sagemaker_session=sdk_session(aws))
    job = launch.launch_training(trainer, uris)
    [req] = aws.calls('CreateTrainingJob')
    assert req['VpcConfig'] == VPC
    assert (req['EnableNetworkIsolation'], req['EnableInterContainerTrafficEncryption']) == (True, True)
    assert req['ResourceConfig'] == {'InstanceType': 'ml.m5.xlarge', 'InstanceCount': 2,
                                     'VolumeSizeInGB': 30, 'VolumeKmsKeyId': VOLUME_KEY}
    assert ((req['OutputDataConfig']['S3OutputPath'], req['OutputDataConfig']['KmsKeyId'])
            == (f's3://{BUCKET}/bsm/models/', OUTPUT_KEY))
    d = aws.sm.describe_training_job(TrainingJobName=job.training_job_name)
    assert d['VpcConfig'] == VPC and d['EnableNetworkIsolation'] is True


def test_training_job_outside_a_vpc_sends_no_network_or_key_settings(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    launch.launch_training(launch.make_trainer(IMAGE, aws.role, CFG, sagemaker_session=sdk_session(aws)), uris)
    [req] = aws.calls('CreateTrainingJob')
    assert not {'VpcConfig', 'EnableNetworkIsolation', 'EnableInterContainerTrafficEncryption'} & set(req)
    assert 'VolumeKmsKeyId' not in req['ResourceConfig'] and 'KmsKeyId' not in req['OutputDataConfig']


def test_output_key_alone_keeps_the_default_output_path(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, security=launch.Security(output_kms_key=OUTPUT_KEY),
                                  sagemaker_session=sdk_session(aws))
    launch.launch_training(trainer, uris)
    [req] = aws.calls('CreateTrainingJob')
    assert (req['OutputDataConfig']['KmsKeyId'] == OUTPUT_KEY
            and req['OutputDataConfig']['S3OutputPath'].startswith(f's3://{BUCKET}/'))
    assert 'VpcConfig' not in req


def test_network_isolation_refuses_a_hub_encoder_before_any_request(aws):
    hub = dataclasses.replace(CFG, pretrained_model='bert-base-uncased')
    isolated = launch.Security(network_isolation=True)
    with pytest.raises(ValueError, match="'bert-base-uncased' is a hub name"):
        launch.make_trainer(IMAGE, aws.role, hub, security=isolated, sagemaker_session=sdk_session(aws))
    with pytest.raises(ValueError, match="'bert-base-uncased' is a hub name"):
        launch.tuning_job_request('bsm-hpo-test', IMAGE, aws.role, hub, {'train': f's3://{BUCKET}/d/train/'},
                                  f's3://{BUCKET}/hpo/', security=isolated)
    assert not {'CreateTrainingJob', 'CreateHyperParameterTuningJob'} & set(aws.ops())


def test_endpoint_in_a_vpc_with_a_volume_key(aws):
    names = hosting.deploy_endpoint(MODEL_DATA, IMAGE, aws.role, 'bsm-test', instance_type='ml.m5.xlarge',
                                    security=locked_down(), sagemaker_client=aws.sm)
    [model], [config] = aws.calls('CreateModel'), aws.calls('CreateEndpointConfig')
    assert (model['VpcConfig'], model['EnableNetworkIsolation']) == (VPC, True)
    assert config['KmsKeyId'] == VOLUME_KEY
    assert aws.sm.describe_model(ModelName=names['model_name'])['VpcConfig'] == VPC


def test_transform_job_with_kms_keys_on_a_model_in_the_vpc(aws):
    sec = locked_down()
    hosting.create_model('bsm-model-1', MODEL_DATA, IMAGE, aws.role, sagemaker_client=aws.sm, security=sec)
    hosting.submit_transform_job(hosting.batch_transform_request('bsm-transform-1', 'bsm-model-1', SCORE_IN, SCORE_OUT,
                                                                 instance_type='ml.m5.xlarge',
                                                               security=sec), aws.sm)
    [model], [sent] = aws.calls('CreateModel'), aws.calls('CreateTransformJob')
    # the transform runs the model's container
    assert (model['VpcConfig'], model['EnableNetworkIsolation']) == (VPC, True)
    assert sent['TransformOutput']['KmsKeyId'] == OUTPUT_KEY
    assert sent['TransformResources'] == {'InstanceType': 'ml.m5.xlarge',
                                          'InstanceCount': 1, 'VolumeKmsKeyId': VOLUME_KEY}


def test_tuning_job_in_a_vpc_with_kms_keys(aws):
    channels = {'train': f's3://{BUCKET}/d/train/', 'val': f's3://{BUCKET}/d/val/'}
    launch.submit_tuning_job(launch.tuning_job_request('bsm-hpo-vpc', IMAGE, aws.role, CFG, channels,
                                                       f's3://{BUCKET}/bsm/hpo/', instance_type='ml.m5.xlarge',
                                                       security=locked_down()), aws.sm)
    [sent] = aws.calls('CreateHyperParameterTuningJob')
    job = sent['TrainingJobDefinition']
    assert job['VpcConfig'] == VPC
    assert (job['EnableNetworkIsolation'], job['EnableInterContainerTrafficEncryption']) == (True, True)
    assert job['ResourceConfig']['VolumeKmsKeyId'] == VOLUME_KEY
    assert job['OutputDataConfig'] == {'S3OutputPath': f's3://{BUCKET}/bsm/hpo/', 'KmsKeyId': OUTPUT_KEY}


@pytest.mark.parametrize('kw, message', [
    ({'subnets': SUBNETS}, r'expected both \(a VPC needs subnets and security groups\) or neither'),
    ({'security_group_ids': GROUPS}, 'expected both'),
    ({'subnets': ['vpc-0a1b2c3d'], 'security_group_ids': GROUPS},
     r"subnets \['vpc-0a1b2c3d'\]: expected subnet ids such as subnet-"),
    ({'subnets': SUBNETS, 'security_group_ids': ['default']},
     r"security_group_ids \['default'\]: expected security group ids such as sg-"),
    ({'volume_kms_key': 'my key'}, "volume_kms_key 'my key': expected a KMS key id, key ARN, alias/NAME or alias ARN"),
    ({'output_kms_key': ''}, "output_kms_key '': expected a KMS key id")])
def test_security_settings_are_checked_before_any_request(kw, message):
    with pytest.raises(ValueError, match=message): launch.Security(**kw)


# --- waiting for transform and tuning jobs, and the walk-through's order ---------------------------------------

def transform_description(status:str, reason:str|None=None)->dict:
    "A DescribeTransformJob answer (the fields the API requires) for botocore's Stubber."
    d = {'TransformJobName': 'bsm-transform-1',
         'TransformJobArn': f'arn:aws:sagemaker:{REGION}:123456789012:transform-job/bsm-transform-1',
         'TransformJobStatus': status, 'ModelName': 'bsm-model-1', 'CreationTime': datetime.datetime(2024, 6, 1),
         'TransformInput': {'DataSource': {'S3DataSource': {'S3DataType': 'S3Prefix', 'S3Uri': SCORE_IN}}},
         'TransformResources': {'InstanceType': 'ml.g5.xlarge', 'InstanceCount': 1}}
    return {**d, 'FailureReason': reason} if reason else d


def tuning_description(status:str, reason:str|None=None)->dict:
    "A DescribeHyperParameterTuningJob answer (the fields the API requires) for botocore's Stubber."
    d = {'HyperParameterTuningJobName': 'bsm-hpo-test',
         'HyperParameterTuningJobArn': f'arn:aws:sagemaker:{REGION}:123456789012:'
                                       'hyper-parameter-tuning-job/bsm-hpo-test',
         'HyperParameterTuningJobConfig': {'Strategy': 'Bayesian', 'ResourceLimits': {'MaxParallelTrainingJobs': 2}},
         'HyperParameterTuningJobStatus': status, 'CreationTime': datetime.datetime(2024, 6, 1),
         'TrainingJobStatusCounters': {}, 'ObjectiveStatusCounters': {}}
    return {**d, 'FailureReason': reason} if reason else d


def stubbed(client, op:str, answers:list, **params):
    "botocore's Stubber on `client`, answering `op` (called with `params`) with `answers` in turn."
    from botocore.stub import Stubber
    stub = Stubber(client)
    for a in answers: stub.add_response(op, a, params)
    return stub


def test_batch_transform_walk_through_deletes_the_model_after_the_transform(aws, tmp_path):
    (tmp_path/'score').mkdir()
    (tmp_path/'score'/'cases.jsonl').write_text('{"case_id": "c1", "message": "Where is my parcel?"}\n')
    score_in = launch.upload_channels(aws.s3, {'in': tmp_path/'score'}, BUCKET, 'bsm/score/demo')['in']
    model = hosting.create_model('bsm-demo-model-1', MODEL_DATA, IMAGE, aws.role, sagemaker_client=aws.sm)
    transform = hosting.batch_transform_request('bsm-demo-transform-1', model, score_in,
                                                f's3://{BUCKET}/bsm/score/demo/out/')
    hosting.submit_transform_job(transform, aws.sm)
    done = hosting.wait_for_transform_job('bsm-demo-transform-1', aws.sm, poll_s=0) # moto's jobs complete at once
    assert (done['TransformJobStatus'], done['ModelName']) == ('Completed', model)
    assert hosting.delete_model(model, aws.sm) == model
    ops = [op for op in aws.ops() if op in ('CreateModel', 'CreateTransformJob', 'DescribeTransformJob', 'DeleteModel')]
    assert ops == ['CreateModel', 'CreateTransformJob', 'DescribeTransformJob', 'DescribeTransformJob', 'DeleteModel']
    from botocore.exceptions import ClientError
    with pytest.raises(ClientError): aws.sm.describe_model(ModelName=model)


def test_wait_for_transform_job_names_the_failure(aws):
    answers = ([transform_description('InProgress')]
               + [transform_description('Failed', 'ClientError: See job logs for more information')] * 2)
    with stubbed(aws.sm, 'describe_transform_job', answers, TransformJobName='bsm-transform-1') as stub:
        with pytest.raises(RuntimeError, match='transform job bsm-transform-1 ended Failed: ClientError: See job logs'):
            hosting.wait_for_transform_job('bsm-transform-1', aws.sm, poll_s=0)
        stub.assert_no_pending_responses()


def test_wait_for_transform_job_gives_up_at_the_deadline(aws):
    with stubbed(aws.sm, 'describe_transform_job', [transform_description('InProgress')] * 3,
                 TransformJobName='bsm-transform-1') as stub:
        with pytest.raises(TimeoutError, match='transform job bsm-transform-1 is still InProgress after 2 s'):
            # two polls, then the verdict
            hosting.wait_for_transform_job('bsm-transform-1', aws.sm, timeout_s=2, poll_s=0)
        stub.assert_no_pending_responses()


def test_wait_for_tuning_job(aws):
    channels = {'train': f's3://{BUCKET}/d/train/', 'val': f's3://{BUCKET}/d/val/'}
    launch.submit_tuning_job(launch.tuning_job_request('bsm-hpo-test', IMAGE, aws.role, CFG, channels,
                                                       f's3://{BUCKET}/bsm/hpo/'), aws.sm)
    assert launch.wait_for_tuning_job('bsm-hpo-test', aws.sm, poll_s=0)['HyperParameterTuningJobStatus'] == 'Completed'
    answers = [tuning_description('InProgress'), tuning_description('Failed', 'All training jobs failed')]
    with stubbed(aws.sm, 'describe_hyper_parameter_tuning_job', answers,
                 HyperParameterTuningJobName='bsm-hpo-test') as stub:
        with pytest.raises(RuntimeError, match='tuning job bsm-hpo-test ended Failed: All training jobs failed'):
            launch.wait_for_tuning_job('bsm-hpo-test', aws.sm, poll_s=0)
        stub.assert_no_pending_responses()
    with stubbed(aws.sm, 'describe_hyper_parameter_tuning_job', [tuning_description('Stopped')],
                 HyperParameterTuningJobName='bsm-hpo-test'):
        with pytest.raises(RuntimeError, match='ended Stopped: SageMaker gave no FailureReason'):
            launch.wait_for_tuning_job('bsm-hpo-test', aws.sm, poll_s=0)


# --- metric regexes on training logs -------------------------------------------------------------

METRIC_LINE = re.compile(r'(?:^|\s)(?:epoch=[0-9]+ |final )')
PAIR = re.compile(r'(\S+)=(\S+)')

def expected_metrics(log:str, names:list)->dict:
    "Every finite `name=value` pair on an epoch or final line, in order: what the regexes must find, and all they may."
    out = {n: [] for n in names}
    for line in log.splitlines():
        m = METRIC_LINE.search(line)
        if not m: continue
        for key, value in PAIR.findall(line[m.start():]):
            if key in out and value.lower() not in ('nan', 'inf', '-inf', '+inf'): out[key].append(float(value))
    return out


@pytest.mark.parametrize('log_file', sorted(LOGS.glob('*.log')), ids=lambda p: p.name)
def test_metric_definitions_read_exactly_the_metric_lines(log_file):
    log = log_file.read_text()
    defs = metric_definitions()
    expected = expected_metrics(log, [d['Name'] for d in defs])
    assert any(expected.values()), f'{log_file.name} has no metric line'
    assert metrics_from_log(log, defs) == expected


def test_metric_definitions_read_the_lines_train_prints():
    from bsm_nb.train import metric_line # the function `train` prints with
    log = '\n'.join([metric_line('epoch=1 step=8',
                                 {'train_loss': 0.69, 'val_loss': 0.7, 'val_auroc': float('nan'), 'val_f1_score': 0.0}),
                     metric_line('epoch=2 step=16',
                                 {'train_loss': 0.5, 'val_loss': 0.4, 'val_auroc': 0.81234, 'val_f1_score': 0.7}),
                     metric_line('final', {'val_loss': 0.4, 'val_auroc': 0.81234, 'test_auroc': 0.9,
                                           'test_f1_score': 0.86, 'threshold': 0.41})])
    got = metrics_from_log(log, metric_definitions(['auroc', 'f1_score']))
    assert got['val_auroc'] == [0.8123, 0.8123] and got['val_loss'] == [0.7, 0.4, 0.4]
    assert got['test_auroc'] == [0.9] and got['threshold'] == [0.41] and got['epoch'] == [1, 2]
    assert got == expected_metrics(log, list(got))


# --- the model registry ------------------------------------------------------------------------------------------

METRICS = {'val': {'auroc': 0.9123, 'average_precision': 0.95, 'f1_score': 0.88, 'accuracy': 0.9, 'loss': 0.2211,
                   'rows': 400},
           'test': {'auroc': 0.9001, 'average_precision': 0.94, 'f1_score': 0.87, 'accuracy': 0.89, 'loss': 0.25,
                    'rows': 400},
           'threshold': 0.41, 'epochs': 4, 'wall_s': 812.5}
HEADLINE = {'test_auroc': '0.9001', 'test_average_precision': '0.9400', 'test_f1_score': '0.8700',
            'test_accuracy': '0.8900', 'val_auroc': '0.9123', 'val_average_precision': '0.9500',
            'val_f1_score': '0.8800', 'val_accuracy': '0.9000', 'threshold': '0.4100'}
SERVED = ['application/json', 'text/csv', 'application/jsonlines']


def model_dir(tmp_path)->Path:
    "A model dir as `train` leaves it, as far as registration cares."
    d = tmp_path/'model'
    d.mkdir()
    (d/'metrics.json').write_text(json.dumps(METRICS, indent=1))
    (d/'model.safetensors').write_bytes(b'\0' * 128)
    return d


def register(aws, tmp_path, model_data=MODEL_DATA, **kw)->str:
    return registry.register_model(model_data, IMAGE, 'bsm-nb',
                                   model_dir(tmp_path) if 'metrics' not in kw else kw.pop('metrics'),
                                 s3=aws.s3, sagemaker_client=aws.sm, **kw)


def test_served_types_are_what_the_server_reads_and_answers():
    from bsm_nb.protocol import CANONICAL
    assert list(hosting.SERVED_TYPES) == list(CANONICAL) == SERVED


def test_register_model_uploads_its_metrics_and_creates_the_group_then_a_version(aws, tmp_path):
    arn = register(aws, tmp_path, properties={'training_job': 'job-1'}, environment={'MODEL_SERVER_WORKERS': 2},
                   realtime_instance_types=['ml.g5.xlarge', 'ml.g5.2xlarge', 'ml.m5.xlarge'],
                   transform_instance_types=['ml.g5.xlarge'])
    registry_ops = [op for op in aws.ops() if 'ModelPackage' in op]
    assert registry_ops == ['DescribeModelPackageGroup', 'CreateModelPackageGroup', 'CreateModelPackage']
    assert aws.calls('CreateModelPackageGroup') == [{'ModelPackageGroupName': 'bsm-nb',
                                                     'ModelPackageGroupDescription': 'bsm_nb models'}]

    [req] = aws.calls('CreateModelPackage')
    assert req.pop('ClientToken') # botocore's idempotency token: a retried request makes no second version
    metrics_s3 = f's3://{BUCKET}/bsm/models/job-1/output/metrics.json' # next to model.tar.gz
    assert req == {
        'ModelPackageGroupName': 'bsm-nb', 'ModelPackageDescription': f'bsm_nb model {MODEL_DATA}',
        'ModelApprovalStatus': 'PendingManualApproval',
        'InferenceSpecification': {
            'Containers': [{'Image': IMAGE, 'ModelDataUrl': MODEL_DATA, 'Environment': {'MODEL_SERVER_WORKERS': '2'}}],
            'SupportedContentTypes': SERVED, 'SupportedResponseMIMETypes': SERVED,
            'SupportedRealtimeInferenceInstanceTypes': ['ml.g5.xlarge', 'ml.g5.2xlarge', 'ml.m5.xlarge'],
            'SupportedTransformInstanceTypes': ['ml.g5.xlarge']},
        'ModelMetrics': {'ModelQuality': {'Statistics': {'ContentType': 'application/json', 'S3Uri': metrics_s3}}},
        'CustomerMetadataProperties': {**HEADLINE, 'training_job': 'job-1'}}
    # metrics.json is where the package says
    obj = aws.s3.get_object(Bucket=BUCKET, Key='bsm/models/job-1/output/metrics.json')
    assert (json.loads(obj['Body'].read()), obj['ContentType']) == (METRICS, 'application/json')

    d = aws.sm.describe_model_package(ModelPackageName=arn)
    assert ((d['ModelPackageGroupName'], d['ModelPackageVersion'], d['ModelApprovalStatus'])
            == ('bsm-nb', 1, 'PendingManualApproval'))
    assert d['InferenceSpecification'] == req['InferenceSpecification']
    assert d['ModelMetrics']['ModelQuality']['Statistics']['S3Uri'] == metrics_s3
    assert d['CustomerMetadataProperties']['test_auroc'] == '0.9001'

    # the next registration is version 2 of the same group
    second = register(aws, tmp_path/'second', model_data=f's3://{BUCKET}/bsm/models/job-2/output/model.tar.gz',
                      metrics=METRICS)
    assert aws.sm.describe_model_package(ModelPackageName=second)['ModelPackageVersion'] == 2
    assert len(aws.calls('CreateModelPackageGroup')) == 1


def test_register_model_reads_the_metrics_out_of_model_tar_gz(aws, tmp_path):
    import tarfile
    d = model_dir(tmp_path)
    with tarfile.open(tmp_path/'model.tar.gz', 'w:gz') as tar: # as SageMaker packs /opt/ml/model
        for f in sorted(d.iterdir(), reverse=True): tar.add(f, arcname=f.name)
    aws.s3.upload_file(str(tmp_path/'model.tar.gz'), BUCKET, 'bsm/models/job-1/output/model.tar.gz')
    assert registry.model_metrics(MODEL_DATA, aws.s3) == METRICS
    registry.register_model(MODEL_DATA, IMAGE, 'bsm-nb', s3=aws.s3, sagemaker_client=aws.sm, approval_status='Approved')
    [req] = aws.calls('CreateModelPackage')
    assert (req['CustomerMetadataProperties'], req['ModelApprovalStatus']) == (HEADLINE, 'Approved')
    body = aws.s3.get_object(Bucket=BUCKET, Key='bsm/models/job-1/output/metrics.json')['Body'].read()
    assert json.loads(body) == METRICS


def test_register_model_checks_the_request_before_uploading(aws, tmp_path):
    with pytest.raises(ValueError,
                       match="approval status 'approved': expected one of Approved, Rejected, PendingManualApproval"):
        register(aws, tmp_path, approval_status='approved')
    assert 'Contents' not in aws.s3.list_objects_v2(Bucket=BUCKET)
    assert not [op for op in aws.ops() if 'ModelPackage' in op]


def test_approve_then_deploy_the_latest_approved_version(aws, tmp_path):
    first = register(aws, tmp_path)
    second = register(aws, tmp_path/'second', model_data=f's3://{BUCKET}/bsm/models/job-2/output/model.tar.gz',
                      metrics=METRICS)
    with pytest.raises(LookupError, match='model package group bsm-nb has no Approved version'):
        registry.latest_approved_package('bsm-nb', aws.sm)

    assert registry.approve_model_package(first, description='test AUROC 0.90', sagemaker_client=aws.sm) == first
    assert aws.calls('UpdateModelPackage') == [{'ModelPackageArn': first, 'ModelApprovalStatus': 'Approved',
                                                'ApprovalDescription': 'test AUROC 0.90'}]
    d = aws.sm.describe_model_package(ModelPackageName=first)
    assert (d['ModelApprovalStatus'], d['ApprovalDescription']) == ('Approved', 'test AUROC 0.90')
    assert registry.latest_approved_package('bsm-nb', aws.sm) == first
    assert aws.calls('ListModelPackages')[-1] == {'ModelPackageGroupName': 'bsm-nb', 'ModelApprovalStatus': 'Approved',
                                                  'SortBy': 'CreationTime', 'SortOrder': 'Descending'}
    registry.approve_model_package(second, sagemaker_client=aws.sm)
    assert registry.latest_approved_package('bsm-nb', aws.sm) == second
    registry.approve_model_package(second, 'Rejected', 'worse on the new data', sagemaker_client=aws.sm)
    assert registry.latest_approved_package('bsm-nb', aws.sm) == first
    with pytest.raises(ValueError, match="approval status 'approve'"):
        registry.approve_model_package(first, 'approve', sagemaker_client=aws.sm)
    assert len(aws.calls('UpdateModelPackage')) == 3

    # a rejected (or pending) version is refused before anything is made
    with pytest.raises(ValueError, match=f'model package {re.escape(second)} is Rejected, not Approved'):
        registry.deploy_from_package(second, aws.role, 'bsm-reg', instance_type='ml.m5.xlarge', sagemaker_client=aws.sm)
    with pytest.raises(ValueError,
                       match='instance type ml.c5.xlarge: the package lists ml.g5.xlarge, ml.m5.xlarge for endpoints'):
        registry.deploy_from_package(first, aws.role, 'bsm-reg', instance_type='ml.c5.xlarge', sagemaker_client=aws.sm)
    assert not aws.calls('CreateModel')

    names = registry.deploy_from_package(registry.latest_approved_package('bsm-nb', aws.sm), aws.role, 'bsm-reg',
                                         instance_type='ml.m5.xlarge',
                                       sagemaker_client=aws.sm)
    [model] = aws.calls('CreateModel')
    # no image, no model data
    assert model == {'ModelName': names['model_name'], 'ExecutionRoleArn': aws.role,
                     'Containers': [{'ModelPackageName': first}]}
    [config] = aws.calls('CreateEndpointConfig')
    assert config['ProductionVariants'] == [{'VariantName': 'AllTraffic', 'ModelName': names['model_name'],
                                             'InstanceType': 'ml.m5.xlarge', 'InitialInstanceCount': 1,
                                             'InitialVariantWeight': 1.0}]
    assert aws.calls('CreateEndpoint') == [{'EndpointName': 'bsm-reg',
                                            'EndpointConfigName': names['endpoint_config_name']}]
    assert aws.sm.describe_model(ModelName=names['model_name'])['Containers'] == [{'ModelPackageName': first}]
    assert aws.sm.describe_endpoint(EndpointName='bsm-reg')['EndpointConfigName'] == names['endpoint_config_name']
    assert hosting.delete_endpoint('bsm-reg', aws.sm)['model_names'] == [names['model_name']]


def test_package_model_on_a_gpu_endpoint_in_a_vpc(aws, tmp_path):
    # moto knows no g5
    arn = register(aws, tmp_path, approval_status='Approved', realtime_instance_types=['ml.g4dn.xlarge'])
    registry.deploy_from_package(arn, aws.role, 'bsm-reg', 'ml.g4dn.xlarge', sagemaker_client=aws.sm,
                                 security=locked_down(), environment={'MODEL_SERVER_TIMEOUT': 120})
    [model], [config] = aws.calls('CreateModel'), aws.calls('CreateEndpointConfig')
    assert model['Containers'] == [{'ModelPackageName': arn, 'Environment': {'MODEL_SERVER_TIMEOUT': '120'}}]
    assert (model['VpcConfig'], model['EnableNetworkIsolation']) == (VPC, True)
    assert ((config['ProductionVariants'][0]['InstanceType'], config['ProductionVariants'][0]['InferenceAmiVersion'])
            == ('ml.g4dn.xlarge', hosting.DEFAULT_INFERENCE_AMI))
    assert config['KmsKeyId'] == VOLUME_KEY
