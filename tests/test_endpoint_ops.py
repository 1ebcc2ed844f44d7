"""`bsm_nb.endpoint_ops`, data capture and inference ids of `bsm_nb.hosting`, and the input mode and warm pool of
`bsm_nb.launch.JobSettings` against moto: each request as sent, and what moto keeps of it. UpdateEndpoint is not in
moto, so its request is checked with `offline_sagemaker` (botocore's service model) after moto made the model."""
import json

import pytest

from bsm_nb import endpoint_ops, hosting, launch
from test_launch import BUCKET, CFG, IMAGE, MODEL_DATA, REGION, aws, sdk_session, upload_tree # noqa: F401 (aws)

__all__ = ['aws'] # the fixture of test_launch, used here by name
TOPIC = f'arn:aws:sns:{REGION}:123456789012:bsm-answers'


def test_deploy_endpoint_with_data_capture_creates_endpoint_config(aws):
    capture = hosting.data_capture_config(f's3://{BUCKET}/bsm/capture/', 20)
    names = hosting.deploy_endpoint(MODEL_DATA, IMAGE, aws.role, 'bsm-live', instance_type='ml.m5.xlarge',
                                    sagemaker_client=aws.sm, data_capture=capture)
    [config] = aws.calls('CreateEndpointConfig')
    assert config['DataCaptureConfig'] == capture
    kept = aws.sm.describe_endpoint_config(EndpointConfigName=names['endpoint_config_name'])['DataCaptureConfig']
    assert kept['CaptureContentTypeHeader']['JsonContentTypes'] == ['application/json', 'application/jsonlines']
    assert (kept['InitialSamplingPercentage'], kept['DestinationS3Uri']) == (20, f's3://{BUCKET}/bsm/capture/')


def test_invoke_endpoint_sends_the_inference_id(aws):
    runtime = aws.boto.client('sagemaker-runtime')
    hosting.invoke_endpoint('bsm-live', [{'case_id': 'c1', 'message': 'hi'}], runtime_client=runtime,
                            inference_id='case-c1')
    [req] = aws.calls('InvokeEndpoint')
    assert req['InferenceId'] == 'case-c1'
    with pytest.raises(ValueError, match='inference_id'):
        hosting.invoke_endpoint('bsm-live', [], runtime_client=runtime, inference_id='x' * 65)
    assert len(aws.calls('InvokeEndpoint')) == 1


def test_deploy_async_creates_endpoint_config_with_async_inference_config(aws):
    sec = launch.Security(output_kms_key='alias/bsm-out')
    names = endpoint_ops.deploy_async(MODEL_DATA, IMAGE, aws.role, 'bsm-async', f's3://{BUCKET}/async/out/',
                                      success_topic=TOPIC, error_topic=TOPIC + '-errors',
                                      instance_type='ml.g4dn.12xlarge', sagemaker_client=aws.sm, security=sec)
    [model] = aws.calls('CreateModel')
    assert model['PrimaryContainer']['Environment'] == {'MODEL_SERVER_TIMEOUT': '3600',
                                                        'SAGEMAKER_MAX_PAYLOAD_IN_MB': '1024'}
    [config] = aws.calls('CreateEndpointConfig')
    assert config['AsyncInferenceConfig'] == {
        'ClientConfig': {'MaxConcurrentInvocationsPerInstance': 4}, # four GPUs: four workers
        'OutputConfig': {'S3OutputPath': f's3://{BUCKET}/async/out/', 'S3FailurePath': f's3://{BUCKET}/async/out/failures/',
                         'KmsKeyId': 'alias/bsm-out',
                         'NotificationConfig': {'SuccessTopic': TOPIC, 'ErrorTopic': TOPIC + '-errors'}}}
    kept = aws.sm.describe_endpoint_config(EndpointConfigName=names['endpoint_config_name'])
    assert kept['AsyncInferenceConfig']['ClientConfig']['MaxConcurrentInvocationsPerInstance'] == 4
    assert aws.sm.describe_endpoint(EndpointName='bsm-async')['EndpointConfigName'] == names['endpoint_config_name']


def test_deploy_async_concurrency_follows_the_servers_workers(aws):
    endpoint_ops.deploy_async(MODEL_DATA, IMAGE, aws.role, 'bsm-async', f's3://{BUCKET}/async/out/',
                              instance_type='ml.m5.xlarge', environment={'MODEL_SERVER_WORKERS': 2},
                              sagemaker_client=aws.sm)
    [config] = aws.calls('CreateEndpointConfig')
    assert config['AsyncInferenceConfig']['ClientConfig'] == {'MaxConcurrentInvocationsPerInstance': 2}


@pytest.mark.parametrize('kw, message', [
    ({'output_s3_uri': 'out/'}, "output_s3_uri 'out/' is not an S3 URI"),
    ({'error_topic': 'bsm-errors'}, "error_topic 'bsm-errors': expected an SNS topic ARN"),
    ({'timeout_s': 4000}, 'timeout_s 4000: expected whole seconds from 1 to 3600'),
    ({'instance_type': 'g5.xlarge'}, "instance_type 'g5.xlarge'"),
    ({'data_capture': 's3://b/c/'}, 'data_capture'),
])
def test_deploy_async_checks_its_arguments_before_any_request(aws, kw, message):
    args = {'output_s3_uri': f's3://{BUCKET}/async/out/', **kw}
    with pytest.raises(ValueError, match=message):
        endpoint_ops.deploy_async(MODEL_DATA, IMAGE, aws.role, 'bsm-async', sagemaker_client=aws.sm, **args)
    assert aws.ops() == ['CreateRole', 'CreateBucket'] # the fixture's own: nothing more


def test_invoke_endpoint_async_sends_a_small_body_inline(aws):
    runtime = aws.boto.client('sagemaker-runtime')
    rows = [{'case_id': 'c1', 'message': 'Where is my parcel?'}]
    out = endpoint_ops.invoke_async('bsm-async', rows, runtime_client=runtime, inference_id='c1')
    [req] = aws.calls('InvokeEndpointAsync')
    assert json.loads(req['Body']) == rows and 'InputLocation' not in req
    assert (req['InferenceId'], req['InvocationTimeoutSeconds']) == ('c1', 3600)
    assert 'OutputLocation' in out


def test_invoke_endpoint_async_uploads_a_large_body_and_passes_its_input_location(aws):
    runtime = aws.boto.client('sagemaker-runtime')
    rows = [{'case_id': f'c{i}', 'message': 'x' * 200} for i in range(1000)]
    uri = f's3://{BUCKET}/async/in/batch-1.json'
    endpoint_ops.invoke_async('bsm-async', rows, uri, runtime_client=runtime, s3_client=aws.s3)
    [req] = aws.calls('InvokeEndpointAsync')
    assert req['InputLocation'] == uri and 'Body' not in req
    body = aws.s3.get_object(Bucket=BUCKET, Key='async/in/batch-1.json')['Body'].read()
    assert len(body) > endpoint_ops.ASYNC_INLINE_MAX and json.loads(body) == rows


def test_invoke_endpoint_async_refuses_a_large_body_without_an_s3_uri(aws):
    rows = [{'case_id': f'c{i}', 'message': 'x' * 200} for i in range(1000)]
    with pytest.raises(ValueError, match='expected s3_input_uri'):
        endpoint_ops.invoke_async('bsm-async', rows, runtime_client=aws.boto.client('sagemaker-runtime'))
    assert aws.ops() == ['CreateRole', 'CreateBucket'] # the fixture's own: nothing more


def test_autoscale_registers_scalable_target_and_puts_scaling_policy(aws):
    hosting.deploy_endpoint(MODEL_DATA, IMAGE, aws.role, 'bsm-live', instance_type='ml.g4dn.xlarge',
                            sagemaker_client=aws.sm)
    aas = aws.boto.client('application-autoscaling')
    arn = endpoint_ops.autoscale('bsm-live', 1, 4, endpoint_ops.server_concurrency('ml.g4dn.xlarge'),
                                 autoscaling_client=aas)
    [register] = aws.calls('RegisterScalableTarget')
    assert register == {'ServiceNamespace': 'sagemaker', 'ResourceId': 'endpoint/bsm-live/variant/AllTraffic',
                        'ScalableDimension': 'sagemaker:variant:DesiredInstanceCount', 'MinCapacity': 1,
                        'MaxCapacity': 4}
    [policy] = aws.calls('PutScalingPolicy')
    tracking = policy['TargetTrackingScalingPolicyConfiguration']
    assert tracking == {'TargetValue': 1.0, 'ScaleOutCooldown': 60, 'ScaleInCooldown': 600,
                        'PredefinedMetricSpecification': {'PredefinedMetricType': endpoint_ops.CONCURRENCY_METRIC}}
    [kept] = aas.describe_scaling_policies(ServiceNamespace='sagemaker')['ScalingPolicies']
    assert kept['PolicyARN'] == arn and kept['PolicyType'] == 'TargetTrackingScaling'
    [target] = aas.describe_scalable_targets(ServiceNamespace='sagemaker')['ScalableTargets']
    assert (target['MinCapacity'], target['MaxCapacity']) == (1, 4)


def test_autoscale_refuses_a_scale_in_quicker_than_its_scale_out(aws):
    with pytest.raises(ValueError, match='scale-in longer than scale-out'):
        endpoint_ops.autoscale('bsm-live', 1, 4, 1, autoscaling_client=aws.boto.client('application-autoscaling'),
                               scale_out_cooldown_s=300, scale_in_cooldown_s=300)
    assert aws.ops() == ['CreateRole', 'CreateBucket'] # the fixture's own: nothing more


def test_update_endpoint_canary_with_auto_rollback(aws):
    # moto has no UpdateEndpoint: the model and configuration go to moto, the update to botocore's validation
    sm, sent = launch.offline_sagemaker(), []
    for op in ('create_model', 'create_endpoint_config'):
        setattr(sm, op, lambda _op=op, **req: (sent.append(_op), getattr(aws.sm, _op)(**req))[1])
    names = endpoint_ops.update_endpoint('bsm-live', f's3://{BUCKET}/bsm/models/job-2/output/model.tar.gz', IMAGE,
                                         aws.role, 'canary', 10, ['bsm-live-5xx'], instance_type='ml.m5.xlarge',
                                         sagemaker_client=sm)
    assert sent == ['create_model', 'create_endpoint_config']
    assert aws.sm.describe_endpoint_config(EndpointConfigName=names['endpoint_config_name'])['ProductionVariants'][0][
        'ModelName'] == names['model_name']
    [(op, update)] = sm.calls
    assert op == 'UpdateEndpoint'
    assert update == {'EndpointName': 'bsm-live', 'EndpointConfigName': names['endpoint_config_name'],
                      'DeploymentConfig': {
                          'BlueGreenUpdatePolicy': {'TrafficRoutingConfiguration': {
                              'Type': 'CANARY', 'WaitIntervalInSeconds': 600,
                              'CanarySize': {'Type': 'CAPACITY_PERCENT', 'Value': 10}}},
                          'AutoRollbackConfiguration': {'Alarms': [{'AlarmName': 'bsm-live-5xx'}]}}}


def test_update_endpoint_blue_green_all_at_once(aws):
    sm = launch.offline_sagemaker()
    endpoint_ops.update_endpoint('bsm-live', MODEL_DATA, IMAGE, aws.role, bake_s=300, sagemaker_client=sm)
    update = dict(sm.calls)['UpdateEndpoint']
    assert update['DeploymentConfig'] == {'BlueGreenUpdatePolicy': {'TrafficRoutingConfiguration': {
        'Type': 'ALL_AT_ONCE', 'WaitIntervalInSeconds': 300}}}


@pytest.mark.parametrize('kw, message', [
    ({'strategy': 'canary'}, 'a canary needs at least one CloudWatch alarm'),
    ({'strategy': 'canary', 'alarms': ['a'], 'canary_percent': 0}, 'canary_percent 0'),
    ({'strategy': 'rolling'}, "strategy 'rolling'"),
    ({'endpoint_name': 'bsm_live'}, "endpoint_name 'bsm_live'"),
])
def test_update_endpoint_checks_its_arguments_before_any_request(kw, message):
    sm = launch.offline_sagemaker()
    args = {'endpoint_name': 'bsm-live', **kw}
    with pytest.raises(ValueError, match=message):
        endpoint_ops.update_endpoint(new_model_data_s3=MODEL_DATA, image_uri=IMAGE, role='arn:aws:iam::1:role/r',
                                     sagemaker_client=sm, **args)
    assert sm.calls == []


def test_fastfile_training_job_with_a_warm_pool(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, input_mode='FastFile', keep_alive_s=1800,
                                  output_s3_uri=f's3://{BUCKET}/bsm/models/', sagemaker_session=sdk_session(aws))
    launch.launch_training(trainer, uris)
    [req] = aws.calls('CreateTrainingJob')
    assert req['AlgorithmSpecification']['TrainingInputMode'] == 'FastFile'
    assert {c['ChannelName']: c['InputMode'] for c in req['InputDataConfig']} == {'train': 'FastFile',
                                                                                 'val': 'FastFile'}
    assert req['ResourceConfig']['KeepAlivePeriodInSeconds'] == 1800


def test_file_mode_training_job_has_no_warm_pool(aws, tmp_path):
    uris = upload_tree(aws, tmp_path)
    trainer = launch.make_trainer(IMAGE, aws.role, CFG, output_s3_uri=f's3://{BUCKET}/bsm/models/',
                                  sagemaker_session=sdk_session(aws))
    launch.launch_training(trainer, uris)
    [req] = aws.calls('CreateTrainingJob')
    assert {c['InputMode'] for c in req['InputDataConfig']} == {'File'}
    assert 'KeepAlivePeriodInSeconds' not in req['ResourceConfig']


def test_tuning_job_with_fastfile_and_a_warm_pool(aws):
    channels = {'train': f's3://{BUCKET}/d/train/', 'val': f's3://{BUCKET}/d/val/'}
    req = launch.tuning_job_request('bsm-hpo-1', IMAGE, aws.role, CFG, channels, f's3://{BUCKET}/hpo/',
                                    input_mode='FastFile', keep_alive_s=600)
    launch.submit_tuning_job(req, aws.sm)
    [sent] = aws.calls('CreateHyperParameterTuningJob')
    definition = sent['TrainingJobDefinition']
    assert definition['AlgorithmSpecification']['TrainingInputMode'] == 'FastFile'
    assert {c['InputMode'] for c in definition['InputDataConfig']} == {'FastFile'}
    assert definition['ResourceConfig']['KeepAlivePeriodInSeconds'] == 600


@pytest.mark.parametrize('kw, message', [
    ({'input_mode': 'Pipe'}, "input_mode 'Pipe': expected File or FastFile"),
    ({'keep_alive_s': 30000}, 'keep_alive_s 30000: expected whole seconds from 0 to 21600'),
    ({'keep_alive_s': 60, 'spot': True}, 'warm pools do not take spot'),
])
def test_job_settings_check_input_mode_and_warm_pool(kw, message):
    with pytest.raises(ValueError, match=message): launch.JobSettings(**kw)
