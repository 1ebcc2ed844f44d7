"""The Flask predictor of SageMaker's classic bring-your-own layout, kept as a thin wrapper: the app
(/ping, /invocations, /execution-parameters) is `bsm_nb.serve.create_app`, which loads
$SAGEMAKER_BASE_DIR/model (default /opt/ml/model) in the background."""
from bsm_nb.serve import create_app

app = create_app()
