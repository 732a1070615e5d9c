"""Check ONNX graphs against TensorRT 10.x's ONNX parser (operators, types, restrictions),
without a GPU. Prints a table and exits with 1 when any graph has a violation.

    python tools/deployment/audit_tensorrt_ops.py work_dirs/sam3_onnx/*.onnx
"""
import argparse
import json
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('onnx', nargs='+', help='ONNX files')
    parser.add_argument('--json', help='also write the report as JSON')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmsam3.deploy.tensorrt_op_audit import audit_onnx, format_table
    reports = [audit_onnx(path) for path in args.onnx]
    print(format_table(reports))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([dict(path=r.path, opset=r.opset, ok=r.ok, violations=r.violations,
                            ops={k: v.count for k, v in r.rows.items()}) for r in reports], f,
                      indent=1)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == '__main__':
    sys.exit(main())
