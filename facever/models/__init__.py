"""Face embedding backbones by name (`create_model("sphere20")`) and the deployable model file.

Importing this package registers every backbone (each module registers on import; the imports
below make the registry complete regardless of what the caller imported first). It imports torch,
so the CLI imports it inside command bodies only.
"""

from facever.models.registry import MAX_PARAMETERS, build_on_meta, create_model, list_models, model_options, register_model

# Imported for their registration side effect; order does not matter.
from facever.models import inception_resnet as _inception_resnet  # noqa: E402,F401
from facever.models import iresnet as _iresnet  # noqa: E402,F401
from facever.models import mobilefacenet as _mobilefacenet  # noqa: E402,F401
from facever.models import sphere as _sphere  # noqa: E402,F401

from facever.models.bundle import load_model_bundle, save_model_bundle  # noqa: E402

__all__ = ["MAX_PARAMETERS", "build_on_meta", "create_model", "list_models", "load_model_bundle", "model_options", "register_model", "save_model_bundle"]
