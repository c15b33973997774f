data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the first az_count zones of a created VPC become subnets; a zone added later sorts after them and changes nothing already created
  state = "available"
  # Local Zones and Wavelength zones lack EFS and ALB support.
  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  create_vpc = var.vpc_id == null
  azs        = local.create_vpc ? slice(data.aws_availability_zones.available.names, 0, var.az_count) : []

  vpc_id             = local.create_vpc ? aws_vpc.this[0].id : var.vpc_id
  vpc_cidr           = local.create_vpc ? var.vpc_cidr : data.aws_vpc.existing[0].cidr_block
  public_subnet_ids  = local.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
  private_subnet_ids = local.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids
  # Counts must be known at plan time, so they come from inputs, never from created subnet lists.
  private_subnet_count = local.create_vpc ? var.az_count : length(var.private_subnet_ids)

  nat_count = !local.create_vpc ? 0 : (var.nat_gateway_mode == "per_az" ? var.az_count : (var.nat_gateway_mode == "single" ? 1 : 0))
}

# An existing VPC's CIDR: brs-serve trusts X-Forwarded-For only from inside it (the ALB).
data "aws_vpc" "existing" {
  count = local.create_vpc ? 0 : 1
  id    = var.vpc_id
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:flow logs belong to the account's network baseline (an existing vpc_id usually has them); this module's VPC is for a first deployment
  count      = local.create_vpc ? 1 : 0
  cidr_block = var.vpc_cidr
  # EFS mount-target DNS names (fs-xxx.efs.REGION.amazonaws.com) resolve only with both enabled.
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.tags, { Name = "${var.name}-vpc" })
}

# Strip the default security group of its allow-all rules so nothing lands in it by accident.
resource "aws_default_security_group" "this" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-igw" })
}

resource "aws_subnet" "public" {
  count             = local.create_vpc ? var.az_count : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 20 - tonumber(split("/", var.vpc_cidr)[1]), count.index)
  tags              = merge(local.tags, { Name = "${var.name}-public-${local.azs[count.index]}", Tier = "public" })
}

resource "aws_subnet" "private" {
  count             = local.create_vpc ? var.az_count : 0
  vpc_id            = aws_vpc.this[0].id
  availability_zone = local.azs[count.index]
  # Private subnets start after the first eight /20 blocks, which are kept for public subnets.
  cidr_block = cidrsubnet(var.vpc_cidr, 20 - tonumber(split("/", var.vpc_cidr)[1]), count.index + 8)
  tags       = merge(local.tags, { Name = "${var.name}-private-${local.azs[count.index]}", Tier = "private" })
}

resource "aws_route_table" "public" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  count                  = local.create_vpc ? 1 : 0
  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count          = local.create_vpc ? var.az_count : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = merge(local.tags, { Name = "${var.name}-nat-${count.index}" })
}

resource "aws_nat_gateway" "this" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = merge(local.tags, { Name = "${var.name}-nat-${count.index}" })
  depends_on    = [aws_internet_gateway.this]
}

# One route table per zone so per_az NAT keeps traffic (and failures) inside the zone.
resource "aws_route_table" "private" {
  count  = local.create_vpc ? var.az_count : 0
  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.tags, { Name = "${var.name}-private-${local.azs[count.index]}" })
}

resource "aws_route" "private_nat" {
  count                  = local.nat_count > 0 ? var.az_count : 0
  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[min(count.index, local.nat_count - 1)].id
}

resource "aws_route_table_association" "private" {
  count          = local.create_vpc ? var.az_count : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# S3 through a gateway endpoint: the instances' and Lambda functions' S3 traffic (jobs bucket, bundle,
# Amazon Linux's package repositories) stays on AWS's network instead of crossing the NAT gateway,
# which costs per GB and is the one way out of the private subnets. Free; no policy beyond the default,
# since the repositories' buckets are Amazon's and the jobs bucket has its own policy.
locals {
  s3_endpoint_route_table_ids = local.create_vpc ? aws_route_table.private[*].id : var.private_route_table_ids
  s3_endpoint                 = local.create_vpc || length(var.private_route_table_ids) > 0
}

resource "aws_vpc_endpoint" "s3" {
  count             = local.s3_endpoint ? 1 : 0
  vpc_id            = local.vpc_id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = local.s3_endpoint_route_table_ids
  tags              = merge(local.tags, { Name = "${var.name}-s3" })
}
