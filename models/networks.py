"""Network factories: ``define_G``, ``define_D``, ``init_net`` and ``get_scheduler`` (nothing else lives here)."""

from torch import nn
from torch.nn import init
from torch.optim import lr_scheduler

from models.cr3net import NUM_CAB, RELEASED_NGF, CR3Net
from util.errors import UserError

GENERATORS = ("gen_drop",)  # --netG: upstream's name for the CR3Net generator, kept for its command lines
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
LR_POLICIES = ("constant", "linear", "step", "cosine")


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights (upstream: N(0, 0.02)) and zero their biases; PReLU slopes keep 0.25."""

    def init_func(m):
        if isinstance(m, nn.Conv2d | nn.Linear | nn.ConvTranspose2d):
            if init_type == "normal":
                init.normal_(m.weight, 0.0, init_gain)
            elif init_type == "xavier":
                init.xavier_normal_(m.weight, gain=init_gain)
            elif init_type == "kaiming":
                init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                init.orthogonal_(m.weight, gain=init_gain)
            else:
                raise UserError(f"unknown --init_type {init_type!r}; choose one of {', '.join(INIT_TYPES)}")
            if m.bias is not None:
                init.zeros_(m.bias)

    net.apply(init_func)
    return net


def init_net(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02, device=None) -> nn.Module:
    """Initialise ``net`` and move it to ``device`` (multi-GPU is DDP, wrapped by the training script)."""
    init_weights(net, init_type, init_gain)
    return net.to(device) if device is not None else net


def define_G(ngf: int = RELEASED_NGF, num_cab: int = NUM_CAB, netG: str = "gen_drop", init_type="normal",
             init_gain=0.02, device=None):
    """The CR3Net generator of width ``ngf`` (64 = released checkpoint)."""
    if netG.lower() not in GENERATORS:
        raise UserError(f"unknown --netG {netG!r}; choose one of {', '.join(GENERATORS)}")
    return init_net(CR3Net(ngf=ngf, num_cab=num_cab), init_type, init_gain, device)


def define_D(input_nc: int = 3, ndf: int = 64, n_layers: int = 3, init_type="normal", init_gain=0.02, device=None):
    """PatchGAN discriminator (upstream: 64 filters, 3 layers, instance norm)."""
    from models.discriminator import NLayerDiscriminator

    return init_net(NLayerDiscriminator(input_nc, ndf, n_layers), init_type, init_gain, device)


def resolve_schedule(opt, iters_per_epoch: int) -> None:
    """Fill in the run's length and decay point: ``opt.n_iters`` (``--n_epochs`` epochs where 0), ``opt.lr_decay_iters``
    (half the run where 0) and ``opt.n_iters_decay_start`` (:func:`get_scheduler`'s name for the linear policy's)."""
    opt.n_iters = opt.n_iters if opt.n_iters > 0 else opt.n_epochs * iters_per_epoch
    opt.lr_decay_iters = opt.lr_decay_iters if opt.lr_decay_iters > 0 else max(1, opt.n_iters // 2)
    opt.n_iters_decay_start = opt.lr_decay_iters


def get_scheduler(optimizer, opt):
    """Learning-rate schedule stepped once per iteration. Upstream trains at a constant rate."""
    policy = getattr(opt, "lr_policy", "constant")
    total = max(1, int(getattr(opt, "n_iters", 1)))
    if policy == "constant":
        return lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    if policy == "linear":
        decay_start = int(getattr(opt, "n_iters_decay_start", total // 2))
        return lr_scheduler.LambdaLR(
            optimizer, lambda it: 1.0 - max(0, it - decay_start) / float(max(1, total - decay_start))
        )
    if policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=int(getattr(opt, "lr_decay_iters", total // 2)), gamma=0.1)
    if policy == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=0)
    raise UserError(f"unknown --lr_policy {policy!r}; choose one of {', '.join(LR_POLICIES)}")
