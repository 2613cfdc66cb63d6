"""Datasets are found by name: ``--dataset_mode rawrr`` loads ``data/rawrr_dataset.py``'s ``RawrrDataset`` for testing
and ``data/rawrr_train_dataset.py``'s ``RawrrTrainDataset`` for training (``--phase train``)."""

import torch

from util.registry import find_class


def find_dataset_using_name(name: str, phase: str = "test"):
    if phase == "train":
        return find_class("data", "train_dataset", name, "--dataset_mode")
    return find_class("data", "dataset", name, "--dataset_mode", exclude_suffix="train_dataset")


def get_option_setter(name: str, phase: str = "test"):
    return find_dataset_using_name(name, phase).modify_commandline_options


def create_dataset(opt):
    return find_dataset_using_name(opt.dataset_mode, getattr(opt, "phase", "test"))(opt)


def create_test_loader(opt, dataset=None):
    """One image per batch, in order; decoding and packing happen in ``--num_threads`` worker processes."""
    dataset = dataset if dataset is not None else create_dataset(opt)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=1,
        shuffle=False,
        num_workers=int(opt.num_threads),
        pin_memory=str(opt.device).startswith("cuda"),
    )
