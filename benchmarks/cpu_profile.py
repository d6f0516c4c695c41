"""Where a CPU training step's time goes: the tutorial data pipeline alone vs the network step alone.

Run: python -m benchmarks.cpu_profile (needs the real data in .cache/cifar10). It explains why no data pipeline
can make CPU training 2x faster than the baseline: the network step, not the data, is the bottleneck.
"""
import time, torch, torch.nn.functional as F
from benchmarks.training import TutorialDataset
from resnet_demo.data import load_cifar10
from resnet_demo.model import build_model
tr = load_cifar10('.cache/cifar10', download=False).train
ds = TutorialDataset(tr.images, tr.labels)
# 1) pipeline alone, in the main process (one core), 2,560 images
t = time.perf_counter()
for i in range(2560): ds[i]
pil = 2560 / (time.perf_counter() - t)
print(f"tutorial PIL transforms alone, 1 process: {pil:.0f} img/s ({1e3/pil:.3f} ms/img)")
# 2) network step alone (fwd+bwd+SGD) on a fixed batch of 128, 2 threads
torch.manual_seed(0)
for depth in (20, 56):
    m = build_model(depth).train(); opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(128, 3, 32, 32); y = torch.randint(0, 10, (128,))
    def step():
        opt.zero_grad(); F.cross_entropy(m(x), y).backward(); opt.step()
    for _ in range(3): step()
    n = 20 if depth == 20 else 8
    t = time.perf_counter()
    for _ in range(n): step()
    print(f"ResNet-{depth} network step alone, batch 128, {torch.get_num_threads()} threads: {n*128/(time.perf_counter()-t):.0f} img/s")
