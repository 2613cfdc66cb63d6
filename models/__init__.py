"""Models are found by name: ``--model RAWRR`` loads ``models/rawrr_model.py``'s ``RAWRRModel``."""

from util.registry import find_class


def find_model_using_name(name: str):
    return find_class("models", "model", name, "--model")


def get_option_setter(name: str):
    return find_model_using_name(name).modify_commandline_options


def create_model(opt):
    model = find_model_using_name(opt.model)(opt)
    if getattr(opt, "verbose", False):
        print(f"model [{type(model).__name__}] was created")
    return model
