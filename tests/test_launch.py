"""`bsm_nb.launch` against moto, an offline AWS: the exact requests that start training, hosting, tuning
and batch transform, and the metric regexes on training logs."""
import json, re
from pathlib import Path
from types import SimpleNamespace

import pytest

from bsm_nb.config import BSMConfig, config_from_dict
from bsm_nb import launch
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
    "moto with an execution role and a bucket; `calls(op)` lists the parameters of each `op` request."
    env = {'AWS_ACCESS_KEY_ID': 'testing', 'AWS_SECRET_ACCESS_KEY': 'testing', 'AWS_SESSION_TOKEN': 'testing',
           'AWS_DEFAULT_REGION': REGION, 'AWS_REGION': REGION, 'SAGEMAKER_VALIDATE_ROLE': 'false',
           # keep the developer's own AWS files out
           'AWS_CONFIG_FILE': str(tmp_path/'aws_config'), 'AWS_SHARED_CREDENTIALS_FILE': str(tmp_path/'aws_credentials')}
    for k, v in env.items(): monkeypatch.setenv(k, v)
    monkeypatch.delenv('AWS_PROFILE', raising=False)
    import boto3
    from moto import mock_aws
    with mock_aws():
        boto = boto3.Session(region_name=REGION)
        requests = []
        # every client made from `boto` afterwards reports the parameters of each call before sending it
        boto.events.register('before-parameter-build.*.*', lambda params, model, **kw: requests.append((model.name, params)))
        role = boto.client('iam').create_role(RoleName='bsm-sagemaker', AssumeRolePolicyDocument=json.dumps(TRUST))['Role']['Arn']
        boto.client('s3').create_bucket(Bucket=BUCKET)
        yield SimpleNamespace(boto=boto, role=role, sm=boto.client('sagemaker'), s3=boto.client('s3'),
                              calls=lambda op: [p for name, p in requests if name == op])


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
    assert launch.upload_channels(sdk_session(aws), {'test': tmp_path/'val'}, BUCKET, 'p') == {'test': f's3://{BUCKET}/p/test/'}


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
    assert launch.model_data_uri(job.training_job_name, aws.sm) == f's3://{BUCKET}/bsm/models/{job.training_job_name}/output/model.tar.gz'


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


def test_deploy_then_delete_endpoint(aws):
    model_data = f's3://{BUCKET}/bsm/models/job-1/output/model.tar.gz'
    names = launch.deploy_endpoint(model_data, IMAGE, aws.role, 'bsm-test', instance_type='ml.m5.xlarge',
                                   environment={'MODEL_SERVER_TIMEOUT': 120}, sagemaker_client=aws.sm)
    [model] = aws.calls('CreateModel')
    assert model['ModelName'] == names['model_name'] and model['ExecutionRoleArn'] == aws.role
    assert model['PrimaryContainer'] == {'Image': IMAGE, 'ModelDataUrl': model_data,
                                         'Environment': {'MODEL_SERVER_TIMEOUT': '120'}}
    [config] = aws.calls('CreateEndpointConfig')
    assert config['EndpointConfigName'] == names['endpoint_config_name']
    assert config['ProductionVariants'] == [{'VariantName': 'AllTraffic', 'ModelName': names['model_name'],
                                             'InstanceType': 'ml.m5.xlarge', 'InitialInstanceCount': 1, 'InitialVariantWeight': 1.0}]
    assert aws.calls('CreateEndpoint') == [{'EndpointName': 'bsm-test', 'EndpointConfigName': names['endpoint_config_name']}]
    assert aws.sm.describe_model(ModelName=names['model_name'])['PrimaryContainer']['ModelDataUrl'] == model_data
    assert aws.sm.describe_endpoint(EndpointName='bsm-test')['EndpointConfigName'] == names['endpoint_config_name']

    deleted = launch.delete_endpoint('bsm-test', aws.sm)
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
    requests.post('http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results', json={'region': REGION, 'results': [
        {'Body': json.dumps(answer), 'ContentType': 'application/json', 'InvokedProductionVariant': 'AllTraffic'}]})
    records = [{'case_id': 'c1', 'message': 'Where is my parcel?', 'order_amount': 12.5}]
    runtime = aws.boto.client('sagemaker-runtime')
    assert launch.invoke_endpoint('bsm-test', records, runtime_client=runtime) == answer
    [req] = aws.calls('InvokeEndpoint')
    assert (req['EndpointName'], req['ContentType'], req['Accept']) == ('bsm-test', 'application/json', 'application/json')
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
    assert conf['ParameterRanges']['ContinuousParameterRanges'] == [{'Name': 'lr', 'MinValue': '1e-05', 'MaxValue': '0.0001', 'ScalingType': 'Logarithmic'}]
    assert conf['ParameterRanges']['IntegerParameterRanges'][0]['Name'] == 'reinit_layers'
    assert conf['ParameterRanges']['CategoricalParameterRanges'] == [{'Name': 'fusion', 'Values': ['concat', 'gated']}]
    assert job['AlgorithmSpecification']['TrainingImage'] == IMAGE
    assert job['AlgorithmSpecification']['MetricDefinitions'] == metric_definitions(CFG.metric_choices)
    assert job['EnableManagedSpotTraining'] is True
    assert job['StoppingCondition'] == {'MaxRuntimeInSeconds': 3600, 'MaxWaitTimeInSeconds': 7200}
    assert [c['DataSource']['S3DataSource']['S3Uri'] for c in job['InputDataConfig']] == list(channels.values())
    # a trial's hyperparameters, static plus tuned (and SageMaker's objective key), give back a valid config
    trial = {**job['StaticHyperParameters'], 'lr': '4.2e-05', 'reinit_layers': '1', 'fusion': 'concat', '_tuning_objective_metric': 'val_auroc'}
    got = config_from_dict(trial)
    assert (got.lr, got.reinit_layers, got.fusion) == (4.2e-05, 1, 'concat')
    assert config_from_dict({**trial, 'lr': str(CFG.lr), 'reinit_layers': '0', 'fusion': 'gated'}) == CFG
    assert launch.best_training_job('bsm-hpo-test', aws.sm)['name'] # moto answers with a placeholder trial


def test_batch_transform_request(aws):
    launch.create_model('bsm-model-1', f's3://{BUCKET}/m/model.tar.gz', IMAGE, aws.role, sagemaker_client=aws.sm)
    req = launch.batch_transform_request('bsm-transform-1', 'bsm-model-1', f's3://{BUCKET}/score/in/', f's3://{BUCKET}/score/out/',
                                         instance_type='ml.m5.xlarge', environment={'MODEL_SERVER_WORKERS': 1})
    arn = launch.submit_transform_job(req, aws.sm)
    assert arn.endswith('transform-job/bsm-transform-1')
    assert aws.calls('CreateTransformJob') == [req]
    d = aws.sm.describe_transform_job(TransformJobName='bsm-transform-1')
    assert d['ModelName'] == 'bsm-model-1'
    assert d['TransformInput']['ContentType'] == 'application/jsonlines' and d['TransformInput']['SplitType'] == 'Line'
    assert d['TransformOutput']['S3OutputPath'] == f's3://{BUCKET}/score/out/'
    assert d['TransformResources'] == {'InstanceType': 'ml.m5.xlarge', 'InstanceCount': 1}
    assert d['Environment'] == {'MODEL_SERVER_WORKERS': '1'}


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
    log = '\n'.join([metric_line('epoch=1 step=8', {'train_loss': 0.69, 'val_loss': 0.7, 'val_auroc': float('nan'), 'val_f1_score': 0.0}),
                     metric_line('epoch=2 step=16', {'train_loss': 0.5, 'val_loss': 0.4, 'val_auroc': 0.81234, 'val_f1_score': 0.7}),
                     metric_line('final', {'val_loss': 0.4, 'val_auroc': 0.81234, 'test_auroc': 0.9, 'test_f1_score': 0.86, 'threshold': 0.41})])
    got = metrics_from_log(log, metric_definitions(['auroc', 'f1_score']))
    assert got['val_auroc'] == [0.8123, 0.8123] and got['val_loss'] == [0.7, 0.4, 0.4]
    assert got['test_auroc'] == [0.9] and got['threshold'] == [0.41] and got['epoch'] == [1, 2]
    assert got == expected_metrics(log, list(got))
